package presence

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Registry = (*Redis)(nil)

var (
	//go:embed list.lua
	listSource string
	//go:embed refresh.lua
	refreshSource string

	listScript    = redis.NewScript(listSource)
	refreshScript = redis.NewScript(refreshSource)
)

// RedisConfig configures a Redis registry.
type RedisConfig struct {
	// Prefix starts every key; nodes of one deployment share it. Zero
	// value means "msgr:".
	Prefix string
	// Key is the 32-byte AES-256 key that seals member names in Redis;
	// every node needs the same one (the server uses the broker's key).
	// Required.
	Key []byte
	// TTL is how long an entry lives without a Refresh: the longest a
	// crashed node's members stay listed. Zero value means DefaultTTL.
	TTL time.Duration
}

// Redis is the Registry of nodes sharing one Redis. Room r is the sorted
// set "<prefix>presence:{r}" (member id → expiry, Unix milliseconds on
// the writing node's clock) and the hash "<prefix>presence:{r}:names"
// (member id → sealed name). The braces put both keys of a room in one
// Redis Cluster slot. Member ids are random and names are sealed with
// AES-256-GCM (the room key and the id as additional data), so that Redis
// holds how many connections are in which room, not who.
type Redis struct {
	client redis.UniversalClient
	prefix string
	aead   cipher.AEAD
	ttl    time.Duration
	now    func() time.Time
}

// NewRedis returns a registry in client's Redis.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) (*Redis, error) {
	if len(cfg.Key) != 32 {
		return nil, fmt.Errorf("presence: key must be 32 bytes (got %d)", len(cfg.Key))
	}
	block, err := aes.NewCipher(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	r := &Redis{client: client, prefix: cfg.Prefix, aead: aead, ttl: cfg.TTL, now: time.Now}
	if r.prefix == "" {
		r.prefix = "msgr:"
	}
	if r.ttl <= 0 {
		r.ttl = DefaultTTL
	}
	return r, nil
}

// TTL returns the entries' lifetime without a Refresh.
func (r *Redis) TTL() time.Duration { return r.ttl }

func (r *Redis) keys(room string) (set, names string) {
	set = r.prefix + "presence:{" + room + "}"
	return set, set + ":names"
}

func unavailable(op string, err error) error {
	return fmt.Errorf("presence: redis %s: %w: %w", op, ErrUnavailable, err)
}

// seal encrypts m's name and flag for room's hash.
func (r *Redis) seal(set string, m Member) string {
	pt, _ := json.Marshal(m) // a string and a bool: cannot fail
	return string(r.aead.Seal(nil, nil, pt, []byte(set+"\x00"+m.ID)))
}

// open reverses seal; ok is false for what does not open.
func (r *Redis) open(set, id, sealed string) (Member, bool) {
	pt, err := r.aead.Open(nil, nil, []byte(sealed), []byte(set+"\x00"+id))
	if err != nil {
		return Member{}, false
	}
	var m Member
	if json.Unmarshal(pt, &m) != nil {
		return Member{}, false
	}
	m.ID = id
	return m, true
}

// Add records m in room.
func (r *Redis) Add(ctx context.Context, room string, m Member) error {
	set, names := r.keys(room)
	now := r.now()
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, set, redis.Z{Score: float64(now.Add(r.ttl).UnixMilli()), Member: m.ID})
		p.HSet(ctx, names, m.ID, r.seal(set, m))
		p.PExpire(ctx, set, r.ttl)
		p.PExpire(ctx, names, r.ttl)
		return nil
	})
	if err != nil {
		return unavailable("add", err)
	}
	return nil
}

// Remove forgets m in room.
func (r *Redis) Remove(ctx context.Context, room string, m Member) error {
	set, names := r.keys(room)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, set, m.ID)
		p.HDel(ctx, names, m.ID)
		return nil
	})
	if err != nil {
		return unavailable("remove", err)
	}
	return nil
}

// Refresh extends the entries still recorded, one script call per room,
// pipelined.
func (r *Redis) Refresh(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	byRoom := make(map[string][]any)
	for _, e := range entries {
		byRoom[e.Room] = append(byRoom[e.Room], e.Member.ID)
	}
	now := r.now()
	head := []any{now.Add(r.ttl).UnixMilli(), now.UnixMilli(), r.ttl.Milliseconds()}
	// Load the script once, so the pipeline can use EVALSHA.
	if err := refreshScript.Load(ctx, r.client).Err(); err != nil {
		return unavailable("refresh", err)
	}
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for room, ids := range byRoom {
			set, names := r.keys(room)
			refreshScript.EvalSha(ctx, p, []string{set, names}, append(append([]any{}, head...), ids...)...)
		}
		return nil
	})
	if err != nil {
		return unavailable("refresh", err)
	}
	return nil
}

// List returns up to limit members of room by name, and the count.
// Entries whose name does not open (sealed under another key) are
// counted but not listed.
func (r *Redis) List(ctx context.Context, room string, limit int) ([]Member, int, error) {
	set, names := r.keys(room)
	res, err := listScript.Run(ctx, r.client, []string{set, names}, r.now().UnixMilli(), max(limit, 0)).Slice()
	if err != nil {
		return nil, 0, unavailable("list", err)
	}
	if len(res) == 0 {
		return nil, 0, fmt.Errorf("presence: redis list: empty answer: %w", ErrUnavailable)
	}
	count, _ := res[0].(int64)
	var out []Member
	for i := 1; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		sealed, _ := res[i+1].(string)
		if m, ok := r.open(set, id, sealed); ok {
			out = append(out, m)
		}
	}
	sortMembers(out)
	return out, int(count), nil
}
