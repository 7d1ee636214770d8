package broker

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/redistest"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// newTestRedisBroker makes a RedisBroker closed when the test ends.
func newTestRedisBroker(t *testing.T, client redis.UniversalClient, cfg RedisConfig, h Handler) *RedisBroker {
	t.Helper()
	b, err := NewRedisBroker(client, cfg, h)
	if err != nil {
		t.Fatalf("NewRedisBroker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestRedisBroker(t *testing.T) {
	testBroker(t, func(t *testing.T, h Handler) Broker {
		client, prefix := redistest.Client(t)
		return newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t)}, h)
	})
}

// secondClient returns another connection pool to the test Redis, as another
// node would have.
func secondClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redistest.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisBrokerTwoNodes(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	cfg := RedisConfig{Prefix: prefix, Key: testKey(t)}
	r1, r2 := newRecorder(), newRecorder()
	n1 := newTestRedisBroker(t, client, cfg, r1.handle)
	n2 := newTestRedisBroker(t, secondClient(t), cfg, r2.handle)
	mustDo(t, "Subscribe n1", n1.Subscribe(ctx, "room"))
	mustDo(t, "Subscribe n2", n2.Subscribe(ctx, "room"))

	mustDo(t, "Publish n1", n1.Publish(ctx, "room", []byte("from n1")))
	mustDo(t, "Publish n2", n2.Publish(ctx, "room", []byte("from n2")))
	for name, r := range map[string]*recorder{"n1": r1, "n2": r2} {
		t.Run(name, func(t *testing.T) {
			r.waitFor(t, "room", "from n1")
			r.waitFor(t, "room", "from n2")
		})
	}

	// A node that leaves a room stops getting it; the other keeps it.
	mustDo(t, "Unsubscribe n2", n2.Unsubscribe(ctx, "room"))
	mustDo(t, "Subscribe n2", n2.Subscribe(ctx, "other"))
	mustDo(t, "Publish n1", n1.Publish(ctx, "room", []byte("only n1")))
	mustDo(t, "Publish n1", n1.Publish(ctx, "other", []byte("marker")))
	r1.waitFor(t, "room", "only n1")
	got := r2.waitFor(t, "other", "marker")
	if last := got[len(got)-2]; last != (delivery{"room", "from n2"}) {
		t.Fatalf("n2 got %v after unsubscribing", last)
	}
}

// TestRedisBrokerSubscribeIsConfirmed: a message published from another
// node right after Subscribe returns is delivered, so Subscribe must not
// return before Redis has subscribed.
func TestRedisBrokerSubscribeIsConfirmed(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	cfg := RedisConfig{Prefix: prefix, Key: testKey(t)}
	r := newRecorder()
	b := newTestRedisBroker(t, client, cfg, r.handle)
	other := newTestRedisBroker(t, secondClient(t), cfg, func(string, []byte) {})
	for i := range 100 {
		ch := fmt.Sprintf("room-%d", i)
		mustDo(t, "Subscribe", b.Subscribe(ctx, ch))
		mustDo(t, "Publish", other.Publish(ctx, ch, []byte("first")))
		r.waitFor(t, ch, "first")
		if i%2 == 0 {
			mustDo(t, "Unsubscribe", b.Unsubscribe(ctx, ch))
		}
	}
}

// rawSubscribe subscribes a plain go-redis client to a Redis channel and
// waits for the confirmation.
func rawSubscribe(t *testing.T, client redis.UniversalClient, rc string) *redis.PubSub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := client.Subscribe(ctx, rc)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("raw subscribe: %v", err)
	}
	return ps
}

func rawReceive(t *testing.T, ps *redis.PubSub) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := ps.ReceiveMessage(ctx)
	if err != nil {
		t.Fatalf("raw receive: %v", err)
	}
	return []byte(m.Payload)
}

func TestRedisBrokerPayloadIsSealed(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t)}, func(string, []byte) {})
	raw := rawSubscribe(t, client, prefix+"broker:room")

	plain := []byte("meet me at the usual place at 10pm")
	mustDo(t, "Publish", b.Publish(ctx, "room", plain))
	mustDo(t, "Publish", b.Publish(ctx, "room", plain))
	first, second := rawReceive(t, raw), rawReceive(t, raw)

	for _, sealed := range [][]byte{first, second} {
		if bytes.Contains(sealed, plain) || bytes.Contains(sealed, []byte("usual place")) {
			t.Fatalf("Redis carries the plaintext: %q", sealed)
		}
		// Format byte + 12-byte nonce + ciphertext of (8-byte time +
		// payload) + 16-byte tag.
		if want := 1 + 12 + 8 + len(plain) + 16; len(sealed) != want {
			t.Fatalf("sealed payload is %d bytes, want %d", len(sealed), want)
		}
		if sealed[0] != 0x01 {
			t.Fatalf("format byte = %#x, want 0x01", sealed[0])
		}
	}
	if bytes.Equal(first, second) {
		t.Fatal("the same payload sealed twice gave the same bytes (nonce reuse)")
	}
}

func TestRedisBrokerDropsWhatDoesNotOpen(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	key := testKey(t)
	r := newRecorder()
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: key}, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "room"))
	mustDo(t, "Subscribe", b.Subscribe(ctx, "other"))

	// Capture a genuine sealed payload for "room".
	raw := rawSubscribe(t, client, prefix+"broker:room")
	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("genuine")))
	sealed := rawReceive(t, raw)
	r.waitFor(t, "room", "genuine")

	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 0x01
	unknownFormat := bytes.Clone(sealed)
	unknownFormat[0] = 0x02
	wrongKey := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t)}, func(string, []byte) {})

	for _, tc := range []struct {
		name    string
		channel string
		payload []byte
	}{
		{"BitFlipped", "room", flipped},
		{"Truncated", "room", sealed[:len(sealed)-1]},
		{"ShorterThanNonce", "room", sealed[:5]},
		{"ShorterThanOverhead", "room", sealed[:36]},
		{"UnknownFormat", "room", unknownFormat},
		{"WithoutFormatByte", "room", sealed[1:]},
		{"Empty", "room", nil},
		{"Plaintext", "room", []byte("forged by someone with Redis access")},
		{"MovedToAnotherChannel", "other", sealed},
	} {
		mustDo(t, "raw publish "+tc.name, client.Publish(ctx, prefix+"broker:"+tc.channel, tc.payload).Err())
	}
	mustDo(t, "Publish under another key", wrongKey.Publish(ctx, "room", []byte("wrong key")))
	const tampered = 10

	mustDo(t, "Publish", b.Publish(ctx, "room", []byte("marker")))
	got := r.waitFor(t, "room", "marker")
	want := []delivery{{"room", "genuine"}, {"room", "marker"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("deliveries = %v, want %v", got, want)
	}
	if n := b.Dropped(); n != tampered {
		t.Fatalf("Dropped() = %d, want %d", n, tampered)
	}
}

func TestRedisBrokerConfig(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		_, err := NewRedisBroker(nil, RedisConfig{Key: make([]byte, n)}, func(string, []byte) {})
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("key of %d bytes: err = %v, want ErrInvalidKey", n, err)
		}
	}
	if _, err := NewRedisBroker(nil, RedisConfig{Key: make([]byte, 32)}, nil); err == nil {
		t.Error("nil handler accepted")
	}
	for _, cfg := range []RedisConfig{
		{MaxAge: -time.Minute},
		{MaxAge: time.Millisecond - 1},
		{MaxSeen: -1},
	} {
		cfg.Key = make([]byte, 32)
		if _, err := NewRedisBroker(nil, cfg, func(string, []byte) {}); err == nil {
			t.Errorf("MaxAge %v, MaxSeen %d accepted", cfg.MaxAge, cfg.MaxSeen)
		}
	}
}

func TestRedisBrokerDefaultPrefix(t *testing.T) {
	ctx := context.Background()
	client, _ := redistest.Client(t)
	b := newTestRedisBroker(t, client, RedisConfig{Key: testKey(t)}, func(string, []byte) {})
	// The test's own prefix is not used here, so pick a channel no one else
	// uses; Pub/Sub leaves no keys behind to clean up.
	ch := "redistest-" + time.Now().Format("150405.000000000")
	raw := rawSubscribe(t, client, "msgr:broker:"+ch)
	mustDo(t, "Publish", b.Publish(ctx, ch, []byte("x")))
	rawReceive(t, raw)
}

// TestRedisBrokerUnavailable needs no Redis: the client points at a port
// nothing listens on.
func TestRedisBrokerUnavailable(t *testing.T) {
	client := redis.NewClient(&redis.Options{
		Addr:          "127.0.0.1:1",
		DialTimeout:   200 * time.Millisecond,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	t.Cleanup(func() { _ = client.Close() })
	b, err := NewRedisBroker(client, RedisConfig{Key: testKey(t)}, func(string, []byte) {})
	if err != nil {
		t.Fatalf("NewRedisBroker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.Publish(ctx, "room", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Publish: err = %v, want ErrUnavailable", err)
	}
	if err := b.Subscribe(ctx, "room"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Subscribe: err = %v, want ErrUnavailable", err)
	}
	if err := b.Unsubscribe(ctx, "room"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Unsubscribe: err = %v, want ErrUnavailable", err)
	}
	// Close stops the reader goroutine even though it never connected.
	mustDo(t, "Close", b.Close())
}

// TestRedisBrokerCloseLeavesNoGoroutines: Close stops the reader goroutine
// and go-redis's Pub/Sub goroutines.
func TestRedisBrokerCloseLeavesNoGoroutines(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	mustDo(t, "Ping", client.Ping(ctx).Err())
	before := runtime.NumGoroutine()
	for range 5 {
		r := newRecorder()
		b, err := NewRedisBroker(client, RedisConfig{Prefix: prefix, Key: testKey(t)}, r.handle)
		if err != nil {
			t.Fatalf("NewRedisBroker: %v", err)
		}
		mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
		mustDo(t, "Publish", b.Publish(ctx, "a", []byte("x")))
		r.waitFor(t, "a", "x")
		mustDo(t, "Close", b.Close())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after closing the brokers:\n%s",
				before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sealByHand seals payload in format 1 with plain AES-GCM and the given
// nonce, following the format as documented rather than calling seal.
func sealByHand(t testing.TB, key []byte, rc string, nonce []byte, publishedMillis int64, payload []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	plaintext := binary.BigEndian.AppendUint64(nil, uint64(publishedMillis))
	plaintext = append(plaintext, payload...)
	out := append([]byte{0x01}, nonce...)
	return gcm.Seal(out, nonce, plaintext, append([]byte{0x01}, rc...))
}

// TestSealFormat checks seal against the documented format, both ways,
// without Redis.
func TestSealFormat(t *testing.T) {
	key := testKey(t)
	aead, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	b := &RedisBroker{aead: aead}
	const rc = "msgr:broker:room:lobby"
	at := time.UnixMilli(1_700_000_000_123)

	// seal → opened by hand.
	sealed := b.seal(rc, at.Add(456*time.Microsecond), []byte("hello"))
	if len(sealed) != 1+12+8+5+16 || sealed[0] != 0x01 {
		t.Fatalf("sealed = %x", sealed)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	plaintext, err := gcm.Open(nil, sealed[1:13], sealed[13:], append([]byte{0x01}, rc...))
	if err != nil {
		t.Fatalf("the documented format does not open what seal made: %v", err)
	}
	if ms := int64(binary.BigEndian.Uint64(plaintext)); ms != at.UnixMilli() || string(plaintext[8:]) != "hello" {
		t.Fatalf("plaintext = %d ‖ %q, want %d ‖ \"hello\"", ms, plaintext[8:], at.UnixMilli())
	}

	// Sealed by hand → open.
	nonce := bytes.Repeat([]byte{9}, 12)
	o, err := b.open(rc, sealByHand(t, key, rc, nonce, -5, []byte("hi")))
	if err != nil {
		t.Fatalf("open of a payload sealed by hand: %v", err)
	}
	if o.published != -5 || string(o.payload) != "hi" || !bytes.Equal(o.nonce[:], nonce) {
		t.Fatalf("open = %+v", o)
	}

	// What the broker sent before format 1: nonce ‖ AES-GCM(payload), the
	// channel name alone as additional data.
	old := gcm.Seal(slices.Clone(nonce), nonce, []byte("old"), []byte(rc))
	if _, err := b.open(rc, old); err == nil {
		t.Fatal("a payload in the format before format 1 opened")
	}
	// Format 1's ciphertext labelled with another format byte.
	relabelled := sealByHand(t, key, rc, nonce, 0, []byte("x"))
	relabelled[0] = 0x02
	if _, err := b.open(rc, relabelled); err == nil {
		t.Fatal("a payload with format byte 0x02 opened")
	}
}

// FuzzOpen feeds open (the decoder of what arrives from Redis) arbitrary
// bytes: it must never panic, and only the genuine sealed seeds may open.
func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	aead, err := newAEAD(key)
	if err != nil {
		f.Fatal(err)
	}
	b := &RedisBroker{aead: aead}
	const rc = "msgr:broker:room"

	// The seeds are sealed by hand with fixed nonces, so that every fuzz
	// worker computes the same ones; that open accepts them also checks the
	// wire format.
	var seeds [][]byte
	for i, p := range []string{"", "hello", string(make([]byte, 300))} {
		nonce := bytes.Repeat([]byte{byte(i)}, 12)
		s := sealByHand(f, key, rc, nonce, int64(i)*1000, []byte(p))
		if o, err := b.open(rc, s); err != nil || string(o.payload) != p || o.published != int64(i)*1000 {
			f.Fatalf("open(seal(%q)) = %+v, %v", p, o, err)
		}
		seeds = append(seeds, s)
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add(make([]byte, 13))
	f.Add(append([]byte{0x01}, make([]byte, 36)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := b.open(rc, data); err == nil {
			for _, s := range seeds {
				if bytes.Equal(data, s) {
					return
				}
			}
			t.Fatalf("forged payload opened: %x", data)
		}
	})
}

// TestRedisBrokerOrderAcrossChannels: on one Redis, one connection carries
// every channel, so the messages one goroutine publishes arrive in publish
// order across channels too (the contract only asks it per channel).
func TestRedisBrokerOrderAcrossChannels(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t)
	r := newRecorder()
	b := newTestRedisBroker(t, client, RedisConfig{Prefix: prefix, Key: testKey(t)}, r.handle)
	mustDo(t, "Subscribe", b.Subscribe(ctx, "a"))
	mustDo(t, "Subscribe", b.Subscribe(ctx, "b"))
	var want []delivery
	for i := range 300 {
		ch := []string{"a", "b"}[i%2]
		p := fmt.Sprint(i)
		mustDo(t, "Publish", b.Publish(ctx, ch, []byte(p)))
		want = append(want, delivery{ch, p})
	}
	if got := r.waitFor(t, "b", "299"); !slices.Equal(got, want) {
		t.Fatalf("deliveries out of publish order: %v", truncate(got))
	}
}
