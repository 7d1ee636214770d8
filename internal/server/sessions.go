package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// sessionAD is the additional data prefix binding a sealed session record
// to its purpose and id.
const sessionAD = "messenger v1 session record "

// sessions keeps session secrets in a SessionStore, sealed with AES-256-GCM
// under a key only the server holds, so reading the store (Redis) alone
// reveals no session secret. The sealed record carries its own expiry and
// the session's creation time, so that someone who can write to the store
// cannot bring back a record after it expired or was ended, beyond its
// sealed expiry, nor keep a session alive past its maximum lifetime.
type sessions struct {
	store       ephemeral.SessionStore
	aead        cipher.AEAD
	ttl         time.Duration
	maxLifetime time.Duration
	now         func() time.Time
}

func newSessions(store ephemeral.SessionStore, key []byte, ttl, maxLifetime time.Duration) (*sessions, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("server: session key: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("server: session key: %w", err)
	}
	return &sessions{store: store, aead: a, ttl: ttl, maxLifetime: maxLifetime, now: time.Now}, nil
}

func sessionKey(id [protocol.SessionIDSize]byte) string { return hex.EncodeToString(id[:]) }

func (s *sessions) ad(id [protocol.SessionIDSize]byte) []byte {
	return append([]byte(sessionAD), id[:]...)
}

// newSessionID returns a fresh random session id.
func newSessionID() ([protocol.SessionIDSize]byte, error) {
	var id [protocol.SessionIDSize]byte
	if _, err := rand.Read(id[:]); err != nil {
		return id, fmt.Errorf("server: session id: %w", err)
	}
	return id, nil
}

// sessionState is what a session record holds: the session secret, when
// the session began and, once the connection authenticated, the user and
// the user's credential generation at that moment (store.User.Generation).
type sessionState struct {
	secret     []byte
	created    time.Time
	user       uuid.UUID // uuid.Nil while anonymous
	generation int64     // the user's; 0 while anonymous
	device     uuid.UUID // the device the user logged in with; uuid.Nil in a version-2 record
}

// recordVersion starts every sealed record's plaintext. Version 2 added the
// generation, version 3 the device; records of version 1 do not open
// (session_unknown), those of version 2 open without a device.
const (
	recordVersion   = 3
	recordVersionV2 = 2
)

// Sizes of a record's plaintext: the head (version, created, expires) and
// secret of every record, then the user id and generation of a logged-in
// one.
const (
	recordHead       = 1 + 8 + 8
	recordAnonymous  = recordHead + protocol.SecretSize
	recordLoggedInV2 = recordAnonymous + 16 + 8
	recordLoggedIn   = recordLoggedInV2 + 16
)

// put stores st under id, sealed, valid for one TTL from now (see seal).
func (s *sessions) put(ctx context.Context, id [protocol.SessionIDSize]byte, st sessionState) error {
	record, err := s.seal(id, st)
	if err != nil {
		return err
	}
	if err := s.store.Put(ctx, sessionKey(id), record, s.ttl); err != nil {
		return fmt.Errorf("server: store session: %w", err)
	}
	return nil
}

// seal returns the sealed record of st, valid for one TTL from now. It is
// nonce ‖ AES-256-GCM(plaintext), additional data "messenger v1 session
// record " ‖ session id, where plaintext is: version (1 byte, 3) ‖ created
// (8, Unix ms, big-endian) ‖ expires (8) ‖ secret (32) ‖ user id (16) ‖
// generation (8, big-endian) ‖ device id (16); the last three are absent
// while anonymous. A version-2 record (from before devices were sealed
// in) has no device id.
func (s *sessions) seal(id [protocol.SessionIDSize]byte, st sessionState) ([]byte, error) {
	plain := make([]byte, 0, recordLoggedIn)
	plain = append(plain, recordVersion)
	plain = binary.BigEndian.AppendUint64(plain, uint64(st.created.UnixMilli()))
	plain = binary.BigEndian.AppendUint64(plain, uint64(s.now().Add(s.ttl).UnixMilli()))
	plain = append(plain, st.secret...)
	if st.user != uuid.Nil {
		plain = append(plain, st.user[:]...)
		plain = binary.BigEndian.AppendUint64(plain, uint64(st.generation))
		plain = append(plain, st.device[:]...)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("server: session nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, s.ad(id)), nil
}

// load returns the state of a live session. An unknown, expired, too old or
// unopenable record is protocol.CodeSessionUnknown. It does not extend the
// session: only a client that proved the secret does (the handshake
// refreshes after the client's Finished).
func (s *sessions) load(ctx context.Context, id [protocol.SessionIDSize]byte) (sessionState, error) {
	var st sessionState
	record, err := s.store.Get(ctx, sessionKey(id))
	if errors.Is(err, ephemeral.ErrNotFound) {
		return st, fmt.Errorf("server: resume: %w", protocol.CodeSessionUnknown)
	}
	if err != nil {
		return st, fmt.Errorf("server: resume: %w", err)
	}
	ns := s.aead.NonceSize()
	if len(record) < ns {
		return st, fmt.Errorf("server: resume: short record: %w", protocol.CodeSessionUnknown)
	}
	plain, err := s.aead.Open(nil, record[:ns], record[ns:], s.ad(id))
	if err != nil || len(plain) < recordHead ||
		!(plain[0] == recordVersion && (len(plain) == recordAnonymous || len(plain) == recordLoggedIn) ||
			plain[0] == recordVersionV2 && (len(plain) == recordAnonymous || len(plain) == recordLoggedInV2)) {
		return st, fmt.Errorf("server: resume: record does not open: %w", protocol.CodeSessionUnknown)
	}
	now := s.now()
	st.created = time.UnixMilli(int64(binary.BigEndian.Uint64(plain[1:9])))
	expires := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[9:17])))
	if !now.Before(expires) || now.Sub(st.created) >= s.maxLifetime {
		return st, fmt.Errorf("server: resume: session expired: %w", protocol.CodeSessionUnknown)
	}
	st.secret = plain[recordHead:recordAnonymous]
	if len(plain) >= recordLoggedInV2 {
		copy(st.user[:], plain[recordAnonymous:])
		st.generation = int64(binary.BigEndian.Uint64(plain[recordAnonymous+16:]))
	}
	if len(plain) == recordLoggedIn {
		copy(st.device[:], plain[recordLoggedInV2:])
	}
	return st, nil
}

// refresh extends a live session by one TTL, re-sealing its record with
// the new expiry (and st's user). A session past its maximum lifetime is
// not extended, and one that was ended or expired meanwhile is not brought
// back: both are protocol.CodeSessionUnknown.
func (s *sessions) refresh(ctx context.Context, id [protocol.SessionIDSize]byte, st sessionState) error {
	if s.now().Sub(st.created) >= s.maxLifetime {
		return fmt.Errorf("server: session past its maximum lifetime: %w", protocol.CodeSessionUnknown)
	}
	record, err := s.seal(id, st)
	if err != nil {
		return err
	}
	err = s.store.Replace(ctx, sessionKey(id), record, s.ttl)
	if errors.Is(err, ephemeral.ErrNotFound) {
		return fmt.Errorf("server: refresh: session ended or expired: %w", protocol.CodeSessionUnknown)
	}
	if err != nil {
		return fmt.Errorf("server: refresh session: %w", err)
	}
	return nil
}

// end forgets a session: it can no longer be resumed.
func (s *sessions) end(ctx context.Context, id [protocol.SessionIDSize]byte) error {
	if err := s.store.Delete(ctx, sessionKey(id)); err != nil {
		return fmt.Errorf("server: end session: %w", err)
	}
	return nil
}
