package broker

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

var (
	_ Broker      = (*RedisBroker)(nil)
	_ Reconnecter = (*RedisBroker)(nil)
)

// RedisConfig configures a RedisBroker. Key is required; the other fields
// have working zero values.
type RedisConfig struct {
	// Prefix starts every Redis channel name the broker uses, so that
	// several deployments (or tests) can share one Redis. Nodes that talk to
	// each other must use the same prefix. Zero value means "msgr:".
	Prefix string
	// Key is the 32-byte AES-256 key that seals payloads. Every node must use
	// the same key; messages sealed under another key are dropped. Generate
	// it with crypto/rand and keep it as secret as the database credentials.
	// Required: NewRedisBroker fails with ErrInvalidKey without it. Random
	// nonces make it safe for about 2^32 messages; replace it (on every node
	// at once) well before that.
	Key []byte
	// MaxAge is how far the publish time sealed in a payload (read from the
	// publishing node's clock) may be from the receiving node's clock, in
	// either direction; payloads outside it are dropped, and their nonces
	// need only be remembered that long. It must cover the clock skew
	// between nodes plus the delivery delay, which includes the time the
	// handler holds up the reader goroutine. It is used in whole
	// milliseconds and must be at least 1ms. Zero value means 2 minutes.
	MaxAge time.Duration
	// MaxSeen bounds how many nonces the broker remembers to detect
	// replayed payloads. When it is full, it forgets the nonce that expires
	// first, which makes that payload replayable once, within its MaxAge
	// (see the package documentation). Each entry costs about 60 bytes of
	// memory. Zero value means 1,000,000 (about 60 MB when full), which with
	// the default MaxAge lasts up to about 8,000 payloads per second
	// received by the node.
	MaxSeen int

	// now is the clock, settable by tests. Zero value means time.Now.
	now func() time.Time
}

const (
	defaultRedisPrefix = "msgr:"
	defaultMaxAge      = 2 * time.Minute
	defaultMaxSeen     = 1_000_000
	// msgChanSize is how many received messages wait for the handler before
	// go-redis stops reading from Redis. If the handler blocks for a minute
	// with the buffer full, go-redis drops messages.
	msgChanSize = 1024
	// psTimeout bounds each command written to the Pub/Sub connection,
	// including a (re)dial.
	psTimeout = 5 * time.Second
)

// psContext returns the context for a command on the shared Pub/Sub
// connection: the caller's values, but not its cancellation or deadline. A
// write that fails because a caller's deadline has passed makes go-redis
// drop and replace the connection, which would lose messages on every
// channel of the node.
func psContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), psTimeout)
}

// RedisBroker is the Broker of nodes that share one Redis. It uses one Pub/Sub
// connection, on which it subscribes to <prefix>broker:<channel> for each
// subscribed channel, and one goroutine that reads it and calls the handler.
//
// The handler is called from that one goroutine, so calls never overlap and
// messages reach it in the order Redis received them: the messages one
// goroutine publishes on one node arrive in publish order on every node.
// A slow handler delays every channel, and payloads that wait behind it
// until they are older than RedisConfig.MaxAge are dropped.
//
// Payloads are sealed with their publish time, and a node delivers a payload
// only if that time is within RedisConfig.MaxAge of its clock and it has not
// seen the payload's nonce before (see the package documentation).
//
// On a Redis Cluster (the client is a *redis.ClusterClient) the broker
// uses sharded Pub/Sub instead, so that room traffic spreads over the
// shards rather than being copied to every one: channel c is the sharded
// channel "<prefix>broker:{p}:c", where p, the partition, is FNV-1a(c)
// mod 16 in decimal, and it is published with SPUBLISH and subscribed
// with SSUBSCRIBE. The braces make p the hash tag, so each partition is
// one hash slot, on one shard, and has its own Pub/Sub connection to that
// shard, opened when the first channel of the partition is subscribed.
// (A prefix that contains braces would put every partition in one slot.)
// Each partition's reader goroutine takes the same lock to deliver, so
// the handler's calls still never overlap, and a channel's messages still
// arrive in the order Redis received them.
//
// go-redis pings the connection every few seconds and, when it breaks,
// reconnects and subscribes again to every subscribed channel; messages
// published in between are lost. On a Cluster it reconnects to the shard
// that owns the partition's slot then. When a slot moves to another shard,
// Redis unsubscribes the partition's connection from all its channels
// (the anchor channel included, which tells the broker); the broker then
// opens a new connection to the new owner and subscribes again, which
// Reconnects counts, as messages published in between are lost.
type RedisBroker struct {
	client     redis.UniversalClient
	cluster    *redis.ClusterClient // set on a Redis Cluster: sharded Pub/Sub
	parts      []*redis.PubSub      // one, or shardedPartitions (nil until used)
	aead       cipher.AEAD
	h          Handler
	chanPrefix string // "<prefix>broker:"
	syncPrefix string // "<prefix>broker-sync:"
	syncID     string // random, per broker
	now        func() time.Time

	// deliverMu serializes the reader goroutines' deliveries, so that
	// handler calls never overlap.
	deliverMu sync.Mutex
	// guard rejects stale and replayed payloads. Used under deliverMu.
	guard *replayGuard
	// readers counts the reader goroutines, which Close waits for.
	readers sync.WaitGroup

	// opMu orders the commands written to ps with the changes to subs and
	// waiters that go with them.
	opMu sync.Mutex

	mu      sync.Mutex
	subs    map[string]struct{}      // subscribed channels (without prefix)
	live    map[string]struct{}      // Redis channels Redis confirmed since Subscribe
	waiters map[string]chan struct{} // sync channel → Subscribe waiting for it
	nextID  uint64                   // for sync channel names
	closed  atomic.Bool              // set under mu

	closing chan struct{} // closed by Close
	dropped atomic.Uint64
	resubs  atomic.Uint64
}

// shardedPartitions is how many partitions, so hash slots and Pub/Sub
// connections, room traffic is spread over on a Redis Cluster. Every node
// must use the same number.
const shardedPartitions = 16

// NewRedisBroker returns a RedisBroker that delivers to h, which must not be
// nil. It starts the reader goroutine, which connects to Redis in the
// background (and keeps retrying while Redis is down); call Close to stop it.
// On a Redis Cluster each partition's connection and reader goroutine start
// with the first Subscribe to one of its channels.
// The client stays owned by the caller, who closes it after the broker.
func NewRedisBroker(client redis.UniversalClient, cfg RedisConfig, h Handler) (*RedisBroker, error) {
	if h == nil {
		return nil, fmt.Errorf("broker: NewRedisBroker with a nil handler")
	}
	aead, err := newAEAD(cfg.Key)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = defaultRedisPrefix
	}
	maxAge := cfg.MaxAge
	switch {
	case maxAge == 0:
		maxAge = defaultMaxAge
	case maxAge < time.Millisecond:
		return nil, fmt.Errorf("broker: RedisConfig.MaxAge %v is less than 1ms", cfg.MaxAge)
	}
	maxSeen := cfg.MaxSeen
	switch {
	case maxSeen == 0:
		maxSeen = defaultMaxSeen
	case maxSeen < 0:
		return nil, fmt.Errorf("broker: RedisConfig.MaxSeen %d is negative", cfg.MaxSeen)
	}
	now := cfg.now
	if now == nil {
		now = time.Now
	}
	b := &RedisBroker{
		client:     client,
		aead:       aead,
		h:          h,
		chanPrefix: prefix + "broker:",
		syncPrefix: prefix + "broker-sync:",
		syncID:     uuid.NewString(),
		now:        now,
		guard:      newReplayGuard(maxAge.Milliseconds(), maxSeen),
		subs:       make(map[string]struct{}),
		live:       make(map[string]struct{}),
		waiters:    make(map[string]chan struct{}),
		closing:    make(chan struct{}),
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		b.cluster = cc
		b.parts = make([]*redis.PubSub, shardedPartitions)
		return b, nil
	}
	// No channels yet, so this does not touch the network.
	b.parts = []*redis.PubSub{client.Subscribe(context.Background())}
	b.startReader(0, b.parts[0])
	return b, nil
}

// startReader starts the reader goroutine of partition part's ps.
func (b *RedisBroker) startReader(part int, ps *redis.PubSub) {
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(msgChanSize))
	b.readers.Add(1)
	go func() {
		defer b.readers.Done()
		b.read(part, ps, ch)
	}()
}

// partOf returns the index of channel's partition: always 0 outside a
// Cluster.
func (b *RedisBroker) partOf(channel string) int {
	if b.cluster == nil {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(channel))
	return int(h.Sum32() % shardedPartitions)
}

// tag returns the hash tag part of partition part's Redis channel names:
// "{<part>}:", or "" outside a Cluster.
func (b *RedisBroker) tag(part int) string {
	if b.cluster == nil {
		return ""
	}
	return "{" + strconv.Itoa(part) + "}:"
}

// redisChannel returns the Redis channel of channel:
// "<prefix>broker:<channel>", or on a Cluster
// "<prefix>broker:{<partition>}:<channel>".
func (b *RedisBroker) redisChannel(channel string) string {
	return b.chanPrefix + b.tag(b.partOf(channel)) + channel
}

// channelOf reverses redisChannel; ok is false for any other name.
func (b *RedisBroker) channelOf(rc string) (string, bool) {
	rest, ok := strings.CutPrefix(rc, b.chanPrefix)
	if !ok || b.cluster == nil {
		return rest, ok
	}
	_, channel, ok := strings.Cut(rest, "}:")
	if !ok || b.redisChannel(channel) != rc {
		return "", false
	}
	return channel, true
}

// syncChannel names sync channel id of partition part:
// "<prefix>broker-sync:<tag><random>:<id>", in the partition's slot.
func (b *RedisBroker) syncChannel(part int, id string) string {
	return b.syncPrefix + b.tag(part) + b.syncID + ":" + id
}

// psSubscribe subscribes partition part's connection to the Redis
// channels rcs, all of the partition. On a Cluster it makes the
// partition's connection on first use, with an anchor channel that stays
// subscribed for the broker's life: go-redis picks the shard to
// (re)connect to by a subscribed channel, so the connection always goes to
// the shard that owns the partition's slot. Called with opMu held.
func (b *RedisBroker) psSubscribe(ctx context.Context, part int, rcs ...string) error {
	if b.cluster == nil {
		return b.parts[0].Subscribe(ctx, rcs...)
	}
	ps := b.parts[part]
	if ps == nil {
		// No channels, so this does not touch the network.
		ps = b.cluster.SSubscribe(ctx)
		b.parts[part] = ps
		// Whether it succeeds or not, go-redis now holds the anchor and
		// rcs as subscribed, and the reader (re)connects by them.
		err := ps.SSubscribe(ctx, append([]string{b.syncChannel(part, "anchor")}, rcs...)...)
		b.startReader(part, ps)
		return err
	}
	return ps.SSubscribe(ctx, rcs...)
}

// psUnsubscribe unsubscribes partition part's connection from the Redis
// channel rc. Called with opMu held.
func (b *RedisBroker) psUnsubscribe(ctx context.Context, part int, rc string) error {
	ps := b.parts[part]
	switch {
	case ps == nil: // never subscribed
		return nil
	case b.cluster != nil:
		return ps.SUnsubscribe(ctx, rc)
	default:
		return ps.Unsubscribe(ctx, rc)
	}
}

// newAEAD returns AES-256-GCM under key with a random 96-bit nonce per
// message, which Seal prepends to its output and Open takes from its input.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("%w (got %d)", ErrInvalidKey, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return aead, nil
}

// The sealed payload format; see seal.
const (
	formatV1     byte = 0x01
	timeSize          = 8  // publish time, Unix milliseconds
	tagSize           = 16 // AES-GCM tag
	sealOverhead      = 1 + nonceSize + timeSize + tagSize
)

// errMalformed reports a payload that is not a sealed payload of a known
// format, or that does not open.
var errMalformed = errors.New("broker: malformed sealed payload")

// seal encrypts payload for the Redis channel rc, published at the time at.
// The result, format 1, is
//
//	0x01 ‖ nonce ‖ AES-256-GCM(key, nonce, plaintext, additional data)
//
// where
//
//   - 0x01 is the format byte;
//   - nonce is 12 bytes from crypto/rand, new for each payload;
//   - plaintext = at as Unix milliseconds, an 8-byte big-endian signed
//     (two's complement) integer ‖ payload;
//   - additional data = 0x01 ‖ rc, the full Redis channel name
//     ("<prefix>broker:<channel>", or on a Cluster
//     "<prefix>broker:{<partition>}:<channel>") as bytes;
//   - AES-256-GCM's output is the ciphertext (as long as the plaintext)
//     followed by the 16-byte tag.
//
// A sealed payload is therefore 1 + 12 + 8 + len(payload) + 16 bytes long.
// The format byte is in the additional data too, so a payload cannot be
// relabelled as another format.
func (b *RedisBroker) seal(rc string, at time.Time, payload []byte) []byte {
	plaintext := make([]byte, timeSize, timeSize+len(payload))
	binary.BigEndian.PutUint64(plaintext, uint64(at.UnixMilli()))
	plaintext = append(plaintext, payload...)
	out := make([]byte, 1, sealOverhead+len(payload))
	out[0] = formatV1
	return b.aead.Seal(out, nil, plaintext, additionalData(rc))
}

// additionalData returns the additional data of format 1 for the Redis
// channel rc.
func additionalData(rc string) []byte {
	return append([]byte{formatV1}, rc...)
}

// opened is a payload that open authenticated.
type opened struct {
	nonce     [nonceSize]byte
	published int64 // Unix milliseconds, from the publisher's clock
	payload   []byte
}

// open authenticates and decrypts what seal made for the Redis channel rc.
// It fails with errMalformed for anything else, including an unknown
// format byte. It does not check the publish time.
func (b *RedisBroker) open(rc string, sealed []byte) (opened, error) {
	if len(sealed) < sealOverhead || sealed[0] != formatV1 {
		return opened{}, errMalformed
	}
	plaintext, err := b.aead.Open(nil, nil, sealed[1:], additionalData(rc))
	if err != nil || len(plaintext) < timeSize {
		return opened{}, errMalformed
	}
	o := opened{
		published: int64(binary.BigEndian.Uint64(plaintext)),
		payload:   plaintext[timeSize:],
	}
	copy(o.nonce[:], sealed[1:])
	return o, nil
}

// Publish seals payload and publishes it to the channel's Redis channel.
func (b *RedisBroker) Publish(ctx context.Context, channel string, payload []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	rc := b.redisChannel(channel)
	publish := b.client.Publish
	if b.cluster != nil {
		publish = b.client.SPublish
	}
	if err := publish(ctx, rc, b.seal(rc, b.now(), payload)).Err(); err != nil {
		return unavailable("redis publish", err)
	}
	return nil
}

// Subscribe subscribes to the channel's Redis channel and waits until Redis
// has done so, or until ctx ends; pass a ctx with a deadline.
//
// When it returns an error other than ErrClosed, the channel stays in the
// subscribed set: the broker subscribes to it again whenever it reconnects
// to Redis, and delivers its messages. Call Unsubscribe to give it up.
func (b *RedisBroker) Subscribe(ctx context.Context, channel string) error {
	// Redis answers the commands of one connection in order, so once it has
	// confirmed a subscription to a fresh sync channel sent in the same
	// SUBSCRIBE, it is subscribed to rc. (rc's own confirmation would not
	// do: it may answer an earlier Subscribe that an Unsubscribe followed.)
	// After a reconnect go-redis subscribes to both again in one command, so
	// the sync confirmation still means rc is subscribed.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("broker: redis subscribe: %w", err)
	}
	rc := b.redisChannel(channel)
	part := b.partOf(channel)
	confirmed := make(chan struct{})

	b.opMu.Lock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		b.opMu.Unlock()
		return ErrClosed
	}
	b.subs[channel] = struct{}{}
	delete(b.live, rc) // its confirmation is not a reconnect
	b.nextID++
	sc := b.syncChannel(part, strconv.FormatUint(b.nextID, 10))
	b.waiters[sc] = confirmed
	b.mu.Unlock()
	psCtx, cancel := psContext(ctx)
	err := b.psSubscribe(psCtx, part, rc, sc)
	cancel()
	b.opMu.Unlock()

	defer b.endSync(ctx, part, sc)
	if err != nil {
		return unavailable("redis subscribe", err)
	}
	select {
	case <-confirmed:
		return nil
	case <-b.closing:
		return ErrClosed
	case <-ctx.Done():
		return unavailable("redis subscribe: waiting for confirmation", ctx.Err())
	}
}

// endSync forgets the sync channel sc and unsubscribes from it.
func (b *RedisBroker) endSync(ctx context.Context, part int, sc string) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	delete(b.waiters, sc)
	b.mu.Unlock()
	if b.closed.Load() {
		return
	}
	// If this fails, go-redis has already dropped sc from the channels it
	// subscribes to after a reconnect, and replaces the connection.
	psCtx, cancel := psContext(ctx)
	defer cancel()
	_ = b.psUnsubscribe(psCtx, part, sc)
}

// Unsubscribe removes channel from the subscribed set, which stops its
// delivery at once, and unsubscribes from its Redis channel. It does this
// even when ctx has ended, and even when it returns an error the handler is
// no longer called for channel: go-redis then replaces the connection with
// one not subscribed to it.
func (b *RedisBroker) Unsubscribe(ctx context.Context, channel string) error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return ErrClosed
	}
	delete(b.subs, channel)
	rc := b.redisChannel(channel)
	delete(b.live, rc)
	b.mu.Unlock()
	psCtx, cancel := psContext(ctx)
	defer cancel()
	if err := b.psUnsubscribe(psCtx, b.partOf(channel), rc); err != nil {
		return unavailable("redis unsubscribe", err)
	}
	return nil
}

// Close closes the Pub/Sub connections and waits for the reader goroutines,
// including a handler call in progress, to finish. It must not be called from
// the handler. It does not close the client.
func (b *RedisBroker) Close() error {
	b.opMu.Lock()
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		b.opMu.Unlock()
		b.readers.Wait()
		return nil
	}
	b.closed.Store(true)
	close(b.closing)
	b.mu.Unlock()
	var err error
	for _, ps := range b.parts {
		if ps != nil {
			err = errors.Join(err, ps.Close())
		}
	}
	b.opMu.Unlock()
	b.readers.Wait()
	if err != nil {
		return fmt.Errorf("broker: close redis pubsub: %w", err)
	}
	return nil
}

// Dropped returns how many payloads received on subscribed channels were
// dropped: those that failed to open (sealed under another key, for another
// channel or in another format, or altered), those whose publish time was
// outside RedisConfig.MaxAge, and those whose nonce had been seen already
// (replayed).
func (b *RedisBroker) Dropped() uint64 {
	return b.dropped.Load()
}

// read is the reader goroutine of partition part's ps: it hands
// subscription confirmations to Subscribe and messages to the handler until
// go-redis closes ch, which it does after Close.
func (b *RedisBroker) read(part int, ps *redis.PubSub, ch <-chan any) {
	anchor := b.syncChannel(part, "anchor")
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			switch {
			case m.Kind == "sunsubscribe" && m.Channel == anchor:
				// The broker never unsubscribes from the anchor: Redis
				// did, because the partition's slot moved to another shard.
				b.readers.Add(1)
				go func() {
					defer b.readers.Done()
					b.movePartition(part, ps)
				}()
			case m.Kind != "subscribe" && m.Kind != "ssubscribe":
			case strings.HasPrefix(m.Channel, b.syncPrefix):
				b.confirm(m.Channel)
			case strings.HasPrefix(m.Channel, b.chanPrefix):
				b.confirmed(m.Channel)
			}
		case *redis.Message:
			b.deliver(m)
		}
	}
}

// movePartition replaces partition part's connection old, whose slot Redis
// moved to another shard (and unsubscribed it from all the slot's
// channels), by a new one, which go-redis opens to the slot's new owner,
// subscribed to the partition's channels and pending sync channels. Their
// confirmations count as reconnects: what was published in between is
// lost.
func (b *RedisBroker) movePartition(part int, old *redis.PubSub) {
	b.awaitSlotOwner(part)
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.closed.Load() || b.parts[part] != old {
		return
	}
	var rcs []string
	b.mu.Lock()
	for channel := range b.subs {
		if b.partOf(channel) == part {
			rcs = append(rcs, b.redisChannel(channel))
		}
	}
	for sc := range b.waiters {
		if strings.HasPrefix(sc, b.syncPrefix+b.tag(part)) {
			rcs = append(rcs, sc)
		}
	}
	b.mu.Unlock()
	_ = old.Close()
	b.parts[part] = nil
	ctx, cancel := psContext(context.Background())
	defer cancel()
	// If this fails, go-redis keeps retrying on the new connection.
	_ = b.psSubscribe(ctx, part, rcs...)
}

// awaitSlotOwner waits until the cluster client's map of slots names a
// shard that owns partition part's slot (go-redis opens a partition's
// connection to the shard that map names), reloading the map every
// 100ms, for at most a minute or until Close.
func (b *RedisBroker) awaitSlotOwner(part int) {
	anchor := b.syncChannel(part, "anchor")
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), psTimeout)
		node, err := b.cluster.MasterForKey(ctx, anchor)
		if err == nil {
			// A shard that does not own the slot answers MOVED.
			err = node.Exists(ctx, anchor).Err()
		}
		cancel()
		if err == nil {
			return
		}
		b.cluster.ReloadState(context.Background())
		select {
		case <-b.closing:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// confirmed notes that Redis subscribed to the channel rc; a second
// confirmation without an Unsubscribe between is a reconnect.
func (b *RedisBroker) confirmed(rc string) {
	b.mu.Lock()
	_, again := b.live[rc]
	b.live[rc] = struct{}{}
	b.mu.Unlock()
	if again {
		b.resubs.Add(1)
	}
}

// Reconnects returns how many times Redis subscribed the broker again to
// a channel it was subscribed to already: go-redis does that after it
// replaced a broken connection, and messages published in between were
// lost.
func (b *RedisBroker) Reconnects() uint64 { return b.resubs.Load() }

// confirm wakes the Subscribe waiting for the sync channel sc.
func (b *RedisBroker) confirm(sc string) {
	b.mu.Lock()
	w, ok := b.waiters[sc]
	delete(b.waiters, sc)
	b.mu.Unlock()
	if ok {
		close(w)
	}
}

// deliver opens m, checks that it is fresh (not stale, not replayed) and
// calls the handler, if m's channel is subscribed and the broker is not
// closed.
func (b *RedisBroker) deliver(m *redis.Message) {
	channel, ok := b.channelOf(m.Channel)
	if !ok {
		return
	}
	b.deliverMu.Lock()
	defer b.deliverMu.Unlock()
	b.mu.Lock()
	_, subscribed := b.subs[channel]
	closed := b.closed.Load()
	b.mu.Unlock()
	if closed || !subscribed {
		return
	}
	o, err := b.open(m.Channel, []byte(m.Payload))
	if err == nil {
		err = b.guard.admit(o.nonce, o.published, b.now().UnixMilli())
	}
	if err != nil {
		b.dropped.Add(1)
		return
	}
	b.h(channel, o.payload)
}
