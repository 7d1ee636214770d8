package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
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
// reveals no session secret.
type sessions struct {
	store ephemeral.SessionStore
	aead  cipher.AEAD
	ttl   time.Duration
}

func newSessions(store ephemeral.SessionStore, key []byte, ttl time.Duration) (*sessions, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("server: session key: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("server: session key: %w", err)
	}
	return &sessions{store: store, aead: a, ttl: ttl}, nil
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

// sessionState is what a session record holds: the session secret and,
// once the connection authenticated, the user.
type sessionState struct {
	secret []byte
	user   uuid.UUID // uuid.Nil while anonymous
}

// put stores st under id, sealed: the record is nonce ‖ AES-GCM(secret ‖
// user id), with the session id in the additional data.
func (s *sessions) put(ctx context.Context, id [protocol.SessionIDSize]byte, st sessionState) error {
	plain := make([]byte, 0, len(st.secret)+16)
	plain = append(plain, st.secret...)
	if st.user != uuid.Nil {
		plain = append(plain, st.user[:]...)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("server: session nonce: %w", err)
	}
	record := s.aead.Seal(nonce, nonce, plain, s.ad(id))
	if err := s.store.Put(ctx, sessionKey(id), record, s.ttl); err != nil {
		return fmt.Errorf("server: store session: %w", err)
	}
	return nil
}

// load returns the state of a live session and refreshes its TTL. An
// unknown, expired or unopenable record is protocol.CodeSessionUnknown.
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
	if err != nil || (len(plain) != protocol.SecretSize && len(plain) != protocol.SecretSize+16) {
		return st, fmt.Errorf("server: resume: record does not open: %w", protocol.CodeSessionUnknown)
	}
	st.secret = plain[:protocol.SecretSize]
	if len(plain) > protocol.SecretSize {
		copy(st.user[:], plain[protocol.SecretSize:])
	}
	if err := s.touch(ctx, id); err != nil {
		return sessionState{}, err
	}
	return st, nil
}

// touch refreshes the TTL of a live session.
func (s *sessions) touch(ctx context.Context, id [protocol.SessionIDSize]byte) error {
	err := s.store.Touch(ctx, sessionKey(id), s.ttl)
	if errors.Is(err, ephemeral.ErrNotFound) {
		return fmt.Errorf("server: touch session: %w", protocol.CodeSessionUnknown)
	}
	if err != nil {
		return fmt.Errorf("server: touch session: %w", err)
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
