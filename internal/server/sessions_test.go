package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestSessionRecords: what someone who can write the session store (but
// does not hold the server's key) can and cannot do with sealed records.
func TestSessionRecords(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	store := ephemeral.NewMemorySessionStore(ephemeral.MemoryConfig{Now: clock})
	t.Cleanup(func() { store.Close() })
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := newSessions(store, key, time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock
	secret := make([]byte, protocol.SecretSize)
	_, _ = rand.Read(secret)
	id, _ := newSessionID()
	user := uuid.New()
	device := uuid.New()
	if err := s.put(ctx, id, sessionState{secret: secret, created: now, user: user, generation: 7, device: device}); err != nil {
		t.Fatal(err)
	}
	st, err := s.load(ctx, id)
	if err != nil || string(st.secret) != string(secret) || st.user != user || st.generation != 7 || st.device != device {
		t.Fatalf("load = %+v, %v", st, err)
	}
	saved, _ := store.Get(ctx, sessionKey(id))

	t.Run("sizes", func(t *testing.T) {
		anon, _ := newSessionID()
		if err := s.put(ctx, anon, sessionState{secret: secret, created: now}); err != nil {
			t.Fatal(err)
		}
		rec, _ := store.Get(ctx, sessionKey(anon))
		if len(rec) != 77 || len(saved) != 117 {
			t.Errorf("records of %d bytes anonymous, %d logged in; docs/security.md says 77 and 117", len(rec), len(saved))
		}
		if st, err := s.load(ctx, anon); err != nil || st.user != uuid.Nil || st.generation != 0 {
			t.Errorf("anonymous record loads as %+v, %v", st, err)
		}
	})
	t.Run("version 1 record", func(t *testing.T) {
		// What the server sealed before records carried the generation.
		plain := []byte{1}
		plain = binary.BigEndian.AppendUint64(plain, uint64(now.UnixMilli()))
		plain = binary.BigEndian.AppendUint64(plain, uint64(now.Add(time.Minute).UnixMilli()))
		plain = append(append(plain, secret...), user[:]...)
		nonce := make([]byte, s.aead.NonceSize())
		_, _ = rand.Read(nonce)
		old, _ := newSessionID()
		_ = store.Put(ctx, sessionKey(old), s.aead.Seal(nonce, nonce, plain, s.ad(old)), time.Minute)
		if _, err := s.load(ctx, old); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("version 1 record: %v, want session_unknown", err)
		}
	})

	t.Run("version 2 record", func(t *testing.T) {
		// What the server sealed before records named the device: it
		// opens, without a device.
		plain := []byte{2}
		plain = binary.BigEndian.AppendUint64(plain, uint64(now.UnixMilli()))
		plain = binary.BigEndian.AppendUint64(plain, uint64(now.Add(time.Minute).UnixMilli()))
		plain = append(append(plain, secret...), user[:]...)
		plain = binary.BigEndian.AppendUint64(plain, 7)
		nonce := make([]byte, s.aead.NonceSize())
		_, _ = rand.Read(nonce)
		old, _ := newSessionID()
		_ = store.Put(ctx, sessionKey(old), s.aead.Seal(nonce, nonce, plain, s.ad(old)), time.Minute)
		st, err := s.load(ctx, old)
		if err != nil || st.user != user || st.generation != 7 || st.device != uuid.Nil {
			t.Fatalf("version 2 record: %+v, %v; want user, generation 7, no device", st, err)
		}
		// A version-2 record with a device id's length does not open.
		plain[0] = 2
		plain = append(plain, device[:]...)
		_ = store.Put(ctx, sessionKey(old), s.aead.Seal(nonce, nonce, plain, s.ad(old)), time.Minute)
		if _, err := s.load(ctx, old); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("version 2 record of version 3's length: %v, want session_unknown", err)
		}
	})

	t.Run("record under another id", func(t *testing.T) {
		other, _ := newSessionID()
		_ = store.Put(ctx, sessionKey(other), saved, time.Minute)
		if _, err := s.load(ctx, other); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("moved record: %v, want session_unknown", err)
		}
	})
	t.Run("altered record", func(t *testing.T) {
		bad := append([]byte(nil), saved...)
		bad[len(bad)-1] ^= 1
		other, _ := newSessionID()
		_ = store.Put(ctx, sessionKey(other), bad, time.Minute)
		if _, err := s.load(ctx, other); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("altered record: %v, want session_unknown", err)
		}
	})
	t.Run("restored after end", func(t *testing.T) {
		if err := s.end(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.load(ctx, id); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("after end: %v", err)
		}
		// Put back after its sealed expiry: refused.
		now = now.Add(2 * time.Minute)
		_ = store.Put(ctx, sessionKey(id), saved, time.Hour)
		if _, err := s.load(ctx, id); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("restored expired record: %v, want session_unknown", err)
		}
	})
	t.Run("refresh does not revive an ended session", func(t *testing.T) {
		id, _ := newSessionID()
		st := sessionState{secret: secret, created: now}
		if err := s.put(ctx, id, st); err != nil {
			t.Fatal(err)
		}
		if err := s.end(ctx, id); err != nil {
			t.Fatal(err)
		}
		// Another connection of the same session refreshes afterwards.
		if err := s.refresh(ctx, id, st); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("refresh after end: %v, want session_unknown", err)
		}
		if _, err := store.Get(ctx, sessionKey(id)); !errors.Is(err, ephemeral.ErrNotFound) {
			t.Fatalf("refresh brought the ended session back: %v", err)
		}
	})
	t.Run("maximum lifetime", func(t *testing.T) {
		id, _ := newSessionID()
		st := sessionState{secret: secret, created: now}
		if err := s.put(ctx, id, st); err != nil {
			t.Fatal(err)
		}
		// Kept alive by activity every 30 s for almost an hour...
		for range 118 {
			now = now.Add(30 * time.Second)
			if err := s.refresh(ctx, id, st); err != nil {
				t.Fatalf("refresh at %s: %v", now.Sub(st.created), err)
			}
		}
		now = now.Add(90 * time.Second)
		if err := s.refresh(ctx, id, st); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("refresh past the lifetime: %v", err)
		}
		if _, err := s.load(ctx, id); !errors.Is(err, protocol.CodeSessionUnknown) {
			t.Fatalf("resume past the lifetime: %v", err)
		}
	})
}
