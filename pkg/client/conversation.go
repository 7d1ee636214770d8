package client

// Direct conversations (docs/protocol.md §8.5) on top of pkg/e2e: the
// server stores and delivers records and key envelopes it cannot read;
// this side looks the devices up, pins them, makes and opens the keys,
// and seals and opens the records.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// ErrOtherConversation means an event given to Conversation.Receive
// belongs to another conversation, or is not a conversation event.
var ErrOtherConversation = errors.New("client: not an event of this conversation")

// maxRotateTries bounds how often a rotation is retried after another
// device stored the same key version first.
const maxRotateTries = 3

// ConversationOptions configure OpenConversation.
type ConversationOptions struct {
	// Pins are the contact pins (trust on first use). Nil: loaded from
	// PinsFile if it is set and exists, else empty.
	Pins *e2e.Pins
	// PinsFile, if set, is where the pins are saved after each change.
	PinsFile string
	// Policy says when to rotate the key; the zero value is pkg/e2e's
	// default.
	Policy e2e.KeyPolicy
	// Guard refuses replayed records. Nil: a fresh one. Pass one restored
	// from JSON to refuse replays across restarts.
	Guard *e2e.ReplayGuard
	// StateDir, if set, is where this device's sender counters are kept,
	// one file per conversation (conv-<id>-<device>.json, 0600), written
	// before each record is handed out: a new session then goes on
	// counting under the latest key instead of rotating it; once the file
	// exists, a key version another device made is used from counter 1
	// rather than rotated. Empty: counters live only as long as the
	// Conversation, and a device rotates the key whenever the latest is
	// one it has no counter for (every new Conversation, and each key
	// the other user made).
	StateDir string
}

// Conversation is an open direct conversation of this device with one
// other user. It is safe for concurrent use.
type Conversation struct {
	conn   *Conn
	me     *e2e.LocalDevice
	id     uuid.UUID
	peer   string
	pins   *e2e.Pins
	file   string
	policy e2e.KeyPolicy
	guard  *e2e.ReplayGuard
	ring   *e2e.Keyring
	saved  *counterFile // nil: counters are not kept

	mu         sync.Mutex
	devices    map[e2e.DeviceRef]e2e.Device // current devices of both users, as looked up
	unverified map[string]bool              // users whose devices differ from the pinned ones
	counters   map[uint32]uint64            // this device's last counter per key version
	server     int                          // the highest key version the server has
	seen       uint64                       // records seen under the latest key version
	read       int64                        // the account's read position when opened
}

// Received is an opened record.
type Received struct {
	// Text is the message.
	Text string
	// From and Device name the sending user and device.
	From   string
	Device uuid.UUID
	// MessageID is the sender's message id.
	MessageID uuid.UUID
	// Seq is the record's number in the conversation's stream.
	Seq int64
	// Time is the sender's clock when it sealed.
	Time time.Time
	// KeyVersion is the key version it was sealed under.
	KeyVersion uint32
	// Verified is false when the sender's devices differ from those
	// pinned (e2e.Pins): the person should compare the safety number
	// again before trusting it.
	Verified bool
}

// OpenConversation opens this device's conversation with peer, creating
// it on the server if the pair has none. It looks up the devices of both
// users, pins them (trust on first use), opens the key versions the server
// holds for this device, and creates key version 1, or the next one when
// KeyPolicy asks for it (the devices changed), wrapped to every current
// device of both users.
func (c *Conn) OpenConversation(ctx context.Context, id *Identity, peer string, opts ConversationOptions) (*Conversation, error) {
	if id.Device == uuid.Nil {
		return nil, ErrNoDeviceID
	}
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgConvOpen, User: peer})
	if err != nil {
		return nil, err
	}
	cid, err := uuid.Parse(r.Conv)
	if r.Type != protocol.MsgConv || err != nil || r.User != peer {
		return nil, fmt.Errorf("client: conv_open answered with %q for %q: %w", r.Type, r.User, protocol.CodeUnexpectedMessage)
	}
	pins := opts.Pins
	if pins == nil {
		pins = &e2e.Pins{}
		if opts.PinsFile != "" {
			if pins, err = e2e.LoadPins(opts.PinsFile); err != nil {
				return nil, err
			}
		}
	}
	guard := opts.Guard
	if guard == nil {
		guard = &e2e.ReplayGuard{}
	}
	saved := newCounterFile(opts.StateDir, cid, id.Device)
	counters, err := saved.load()
	if err != nil {
		return nil, err
	}
	cv := &Conversation{
		conn: c, id: cid, peer: peer, pins: pins, file: opts.PinsFile, policy: opts.Policy, guard: guard, saved: saved,
		me:         &e2e.LocalDevice{User: id.User, ID: id.Device, Signing: id.Signing, Encryption: id.Encryption},
		ring:       e2e.NewKeyring(cid),
		counters:   counters,
		unverified: map[string]bool{},
		server:     r.Version,
		read:       r.Seq,
	}
	if err := cv.Refresh(ctx); err != nil {
		return nil, err
	}
	if err := cv.loadKeys(ctx); err != nil {
		return nil, err
	}
	if err := cv.rotateIfNeeded(ctx); err != nil {
		return nil, err
	}
	return cv, nil
}

// ID returns the conversation's id.
func (cv *Conversation) ID() uuid.UUID { return cv.id }

// Peer returns the other user.
func (cv *Conversation) Peer() string { return cv.peer }

// ReadPosition returns the account's read position as the server had it
// when the conversation was opened, or as MarkRead last set it.
func (cv *Conversation) ReadPosition() int64 {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return cv.read
}

// KeyVersion returns the latest key version this device holds.
func (cv *Conversation) KeyVersion() uint32 {
	if k := cv.ring.Latest(); k != nil {
		return k.Version()
	}
	return 0
}

// Refresh looks up the devices of both users again and checks them
// against the pins. A user whose devices changed is marked unverified
// (Received.Verified) until Accept; the next send rotates the key to the
// devices now listed (KeyPolicy).
func (cv *Conversation) Refresh(ctx context.Context) error {
	devices := map[e2e.DeviceRef]e2e.Device{}
	unverified := map[string]bool{}
	for _, user := range []string{cv.me.User, cv.peer} {
		ct, err := cv.conn.Lookup(ctx, user)
		if err != nil {
			return err
		}
		ds := make([]e2e.Device, len(ct.Devices))
		for i, d := range ct.Devices {
			ds[i] = d.Device
			devices[d.Ref()] = d.Device
		}
		check, err := cv.pins.Check(user, ds)
		if err != nil {
			return err
		}
		unverified[user] = check.Result == e2e.PinChanged
	}
	if cv.file != "" {
		if err := cv.pins.Save(cv.file); err != nil {
			return err
		}
	}
	cv.mu.Lock()
	cv.devices, cv.unverified = devices, unverified
	cv.mu.Unlock()
	return nil
}

// Accept pins user's devices as now looked up, after the person compared
// the safety number: its records count as verified again.
func (cv *Conversation) Accept(user string) error {
	cv.mu.Lock()
	var ds []e2e.Device
	for _, d := range cv.devices {
		if d.User == user {
			ds = append(ds, d)
		}
	}
	cv.mu.Unlock()
	if err := cv.pins.Accept(user, ds); err != nil {
		return err
	}
	if cv.file != "" {
		if err := cv.pins.Save(cv.file); err != nil {
			return err
		}
	}
	cv.mu.Lock()
	cv.unverified[user] = false
	cv.mu.Unlock()
	return nil
}

// currentDevices returns the looked-up devices of both users.
func (cv *Conversation) currentDevices() []e2e.Device {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	out := make([]e2e.Device, 0, len(cv.devices))
	for _, d := range cv.devices {
		out = append(out, d)
	}
	return out
}

func (cv *Conversation) device(ref e2e.DeviceRef) (e2e.Device, bool) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	d, ok := cv.devices[ref]
	return d, ok
}

// loadKeys fetches the key versions above the latest this device holds
// and opens those made for it by a device it knows. Others (made before
// this device existed, or by a device no longer listed) are skipped.
func (cv *Conversation) loadKeys(ctx context.Context) error {
	since := 0
	if k := cv.ring.Latest(); k != nil {
		since = int(k.Version())
	}
	for {
		r, err := cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvKeys, Conv: cv.id.String(), Version: since})
		if err != nil {
			return err
		}
		for _, e := range r.Envelopes {
			since = max(since, e.Version)
			cv.mu.Lock()
			cv.server = max(cv.server, e.Version)
			cv.mu.Unlock()
			if err := cv.addEnvelope(e.Envelope); err != nil &&
				!errors.Is(err, e2e.ErrNotARecipient) && !errors.Is(err, e2e.ErrUnknownDevice) {
				return err
			}
		}
		if !r.More || len(r.Envelopes) == 0 {
			return nil
		}
	}
}

// addEnvelope opens an envelope and adds its key to the keyring.
func (cv *Conversation) addEnvelope(data []byte) error {
	env, err := e2e.ParseKeyEnvelope(data)
	if err != nil {
		return err
	}
	creator, ok := cv.device(env.Creator)
	if !ok {
		return fmt.Errorf("client: key version %d made by %s/%s, not a current device: %w", env.KeyVersion, env.Creator.User, env.Creator.ID, e2e.ErrUnknownDevice)
	}
	key, err := env.Open(cv.id, cv.peer, creator, cv.me)
	if err != nil {
		return err
	}
	return cv.ring.Add(key)
}

// rotateIfNeeded makes the next key version when this device holds none,
// when KeyPolicy asks for one, or when this device has no counter for the
// latest (it cannot know which counters it already used under a key
// it did not make in this session; a fresh key starts them at 1).
func (cv *Conversation) rotateIfNeeded(ctx context.Context) error {
	for range maxRotateTries {
		key := cv.ring.Latest()
		if key != nil {
			cv.mu.Lock()
			_, counted := cv.counters[key.Version()]
			seen := cv.seen
			cv.mu.Unlock()
			reason, err := cv.policy.Check(key, e2e.KeyUsage{Messages: seen, Devices: cv.currentDevices()})
			if err != nil {
				return err
			}
			// With a complete counter file, a version missing from it was
			// never sealed under by this device (counterFile).
			if reason == e2e.KeepKey && (counted || cv.saved.complete() || cv.guard.LastCounter(cv.id, cv.me.Ref(), key.Version()) > 0) {
				if !counted {
					cv.mu.Lock()
					cv.counters[key.Version()] = cv.guard.LastCounter(cv.id, cv.me.Ref(), key.Version())
					cv.mu.Unlock()
				}
				return nil
			}
		}
		cv.mu.Lock()
		next := cv.server + 1
		cv.mu.Unlock()
		data, k, err := e2e.NewKeyEnvelope(cv.me, e2e.EnvelopeParams{Conversation: cv.id, KeyVersion: uint32(next), Devices: cv.currentDevices()})
		if err != nil {
			return err
		}
		_, err = cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvPutKey, Conv: cv.id.String(), Version: next, Envelope: data})
		if errors.Is(err, protocol.CodeConflict) {
			// Another device stored this version first: take it and
			// look again.
			if err := cv.loadKeys(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := cv.ring.Add(k); err != nil {
			return err
		}
		cv.mu.Lock()
		cv.server, cv.seen = next, 0
		cv.counters[k.Version()] = 0
		cv.mu.Unlock()
		return nil
	}
	return fmt.Errorf("client: conversation %s: other devices keep rotating the key: %w", cv.id, protocol.CodeConflict)
}

// Sealed is a record ready to send; keep it to retry the send with the
// same bytes (same message id and counter).
type Sealed struct {
	// MessageID is the record's message id.
	MessageID uuid.UUID
	// Record is the record's encoding.
	Record []byte
}

// Seal seals text under the latest key version with this device's next
// counter, rotating the key first if KeyPolicy asks for it.
func (cv *Conversation) Seal(ctx context.Context, text string) (*Sealed, error) {
	if err := cv.rotateIfNeeded(ctx); err != nil {
		return nil, err
	}
	key := cv.ring.Latest()
	cv.mu.Lock()
	defer cv.mu.Unlock()
	counter := cv.counters[key.Version()] + 1
	mid := uuid.New()
	rec, err := e2e.Seal(key, cv.me, e2e.Outgoing{Recipient: cv.peer, MessageID: mid, Counter: counter, Text: text})
	if err != nil {
		return nil, err
	}
	cv.counters[key.Version()] = counter
	// Saved before the record leaves: a crash after sending never makes
	// the next session reuse the counter.
	if err := cv.saved.save(cv.counters); err != nil {
		cv.counters[key.Version()] = counter - 1
		return nil, err
	}
	cv.seen++
	return &Sealed{MessageID: mid, Record: rec}, nil
}

// Send sends a sealed record and waits until the server has committed
// it. Retrying with the same Sealed is idempotent: a record already
// committed keeps its sequence number and is not delivered twice.
func (cv *Conversation) Send(ctx context.Context, s *Sealed) (Sent, error) {
	r, err := cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvSend, Conv: cv.id.String(), Record: s.Record})
	if err != nil {
		return Sent{}, err
	}
	return Sent{Seq: r.Seq, Epoch: r.Epoch}, nil
}

// SendText seals text and sends it. On an error, retry with Send and the
// returned Sealed (if not nil), not with SendText: a new seal is a new
// message.
func (cv *Conversation) SendText(ctx context.Context, text string) (*Sealed, Sent, error) {
	s, err := cv.Seal(ctx, text)
	if err != nil {
		return nil, Sent{}, err
	}
	sent, err := cv.Send(ctx, s)
	return s, sent, err
}

// IsConversationEvent reports whether m is a conversation event the
// server pushed (conv_msg, conv_key).
func IsConversationEvent(m *protocol.Message) bool {
	return m.Type == protocol.MsgConvMsg || m.Type == protocol.MsgConvKey
}

// Receive handles a conversation event of this conversation, pushed or
// from a history page: a conv_msg is opened and returned; a conv_key
// (nil, nil) adds the new key version. A record already accepted once
// (e2e.ErrReplay) is also (nil, nil), so that one seen live and again in
// history is returned once. Any other failure is pkg/e2e's error.
func (cv *Conversation) Receive(ctx context.Context, m *protocol.Message) (*Received, error) {
	if !IsConversationEvent(m) || m.Conv != cv.id.String() {
		return nil, ErrOtherConversation
	}
	if m.Type == protocol.MsgConvKey {
		return nil, cv.loadKeys(ctx)
	}
	got, err := cv.open(ctx, m, cv.guard)
	if errors.Is(err, e2e.ErrReplay) {
		return nil, nil
	}
	return got, err
}

// open opens a conv_msg of this conversation, checking it against guard
// if guard is not nil.
func (cv *Conversation) open(ctx context.Context, m *protocol.Message, guard *e2e.ReplayGuard) (*Received, error) {
	rec, err := e2e.ParseRecord(m.Record)
	if err != nil {
		return nil, err
	}
	sender, ok := cv.device(rec.Sending())
	if !ok {
		// A device added since the lookup: look again (and note the
		// change against the pins).
		if err := cv.Refresh(ctx); err != nil {
			return nil, err
		}
		if sender, ok = cv.device(rec.Sending()); !ok {
			return nil, fmt.Errorf("client: record from %s/%s, not a current device: %w", rec.Sender, rec.SenderDevice, e2e.ErrUnknownDevice)
		}
	}
	if _, ok := cv.ring.Key(rec.KeyVersion); !ok {
		if err := cv.loadKeys(ctx); err != nil {
			return nil, err
		}
	}
	msg, err := e2e.Open(cv.ring, rec, sender, guard)
	if err != nil {
		return nil, err
	}
	cv.mu.Lock()
	if latest := cv.ring.Latest(); guard != nil && latest != nil && latest.Version() == msg.KeyVersion {
		cv.seen++
	}
	verified := !cv.unverified[msg.Sender]
	cv.mu.Unlock()
	if fps, ok := cv.pins.Pinned(msg.Sender); !ok || !containsFingerprint(fps, sender.Fingerprint()) {
		verified = false
	}
	return &Received{
		Text: msg.Text, From: msg.Sender, Device: msg.SenderDevice, MessageID: msg.MessageID,
		Seq: m.Seq, Time: msg.Time(), KeyVersion: msg.KeyVersion, Verified: verified,
	}, nil
}

func containsFingerprint(fps []e2e.Fingerprint, fp e2e.Fingerprint) bool {
	for _, f := range fps {
		if f == fp {
			return true
		}
	}
	return false
}

// Missed pages the conversation's history after the read position and
// returns its records opened, oldest first, then moves the read position
// to the last one. A record that fails to open is left out and its error
// joined into the returned error; the others are still returned.
func (cv *Conversation) Missed(ctx context.Context) ([]*Received, error) {
	after := cv.ReadPosition()
	var out []*Received
	var errs []error
	for {
		a := after
		r, err := cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvHistory, Conv: cv.id.String(), After: &a, Limit: 200})
		if err != nil {
			return out, err
		}
		for _, m := range r.Msgs {
			after = max(after, m.Seq)
			got, err := cv.Receive(ctx, m)
			if err != nil {
				errs = append(errs, fmt.Errorf("seq %d: %w", m.Seq, err))
				continue
			}
			if got != nil {
				out = append(out, got)
			}
		}
		if !r.More || len(r.Msgs) == 0 {
			break
		}
	}
	if after > cv.ReadPosition() {
		if err := cv.MarkRead(ctx, after); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// MarkRead records that the account has read the conversation up to seq.
func (cv *Conversation) MarkRead(ctx context.Context, seq int64) error {
	if _, err := cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgRead, Conv: cv.id.String(), Seq: seq}); err != nil {
		return err
	}
	cv.mu.Lock()
	cv.read = max(cv.read, seq)
	cv.mu.Unlock()
	return nil
}

// Conversations lists the account's conversations with their heads and
// read positions (Head - Read are unread).
func (c *Conn) Conversations(ctx context.Context) ([]protocol.ConvPosition, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgConvs})
	if err != nil {
		return nil, err
	}
	return r.Convs, nil
}
