// Package store is the messenger's durable store: user accounts, their
// published identity keys, rooms with their members, and the history of
// rooms and direct conversations (history.go).
//
// The domain types and the Store interface are declared here, together with
// the validation every backend runs before it touches the database. Two
// adapters implement Store: SQLite (embedded, the default) and Postgres
// (production). Both run the same contract test.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Sentinel errors. Backends wrap them with the operation that failed, so
// callers test with errors.Is.
var (
	// ErrNotFound reports that a user, key set or room does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict reports a duplicate user name, room name or ID.
	ErrConflict = errors.New("store: already exists")
	// ErrInvalid reports a value that failed validation. The error that
	// carries it is a *FieldError naming the field.
	ErrInvalid = errors.New("store: invalid value")
)

// Limits enforced by validation, in bytes (names are ASCII, so bytes are
// characters).
const (
	// MaxUserNameLen is the longest user name.
	MaxUserNameLen = 32
	// MaxRoomNameLen is the longest room name.
	MaxRoomNameLen = 64
	// MaxPasswordHashLen is the longest password hash (a PHC string).
	MaxPasswordHashLen = 256
	// MaxPublicKeyLen is the longest signing or encryption public key.
	MaxPublicKeyLen = 2048
	// MaxSelfSignatureLen is the longest key-set self-signature.
	MaxSelfSignatureLen = 1024
)

// FieldError is the error returned for a value that failed validation. It
// matches ErrInvalid with errors.Is; Field names the offending field (for
// example "user.name") so the API layer can tell the client which one.
// It never contains the value itself.
type FieldError struct {
	// Field is the type and field, in lower case: "user.name", "keys.signing_key".
	Field string
	// Reason says what rule the value broke.
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// User is an account.
type User struct {
	// ID is assigned by CreateUser (a random UUID) when zero.
	ID uuid.UUID
	// Name is 1..MaxUserNameLen characters from [a-z0-9_.-], starting with a
	// letter or digit. Upper-case ASCII input is accepted and stored
	// lower-case, so names are unique case-insensitively.
	Name string
	// PasswordHash is a PHC string ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"),
	// 1..MaxPasswordHashLen bytes. The store treats it as opaque bytes.
	PasswordHash string
	// CreatedAt is set by CreateUser when zero. Times are returned in UTC,
	// truncated to microseconds (what both databases keep).
	CreatedAt time.Time
	// Generation counts changes of the user's credentials: 1 when the user
	// is created (a value passed to CreateUser is ignored), one more with
	// every ChangePassword, and every key version after
	// the first that PublishKeys stores. The server seals it into a logged-in session, so
	// that a change revokes every session logged in before it.
	Generation int64
}

// KeySet is one version of a user's published public identity keys. The
// store keeps every version; the current keys are the highest version.
//
// Key sets are what the server published before devices (devices.go):
// migration 0004 made each user's current key set the user's first
// device, and the server now reads and writes devices only. The key-set
// methods stay, with their contract, for that history.
type KeySet struct {
	// UserID is the owner.
	UserID uuid.UUID
	// Version is 1, 2, 3... assigned by PublishKeys; a value passed in is ignored.
	Version int
	// SigningKey is the PKIX DER of an RSA-PSS public key, 1..MaxPublicKeyLen
	// bytes. The store does not parse it.
	SigningKey []byte
	// EncryptionKey is the PKIX DER of an RSA-OAEP public key,
	// 1..MaxPublicKeyLen bytes. The store does not parse it.
	EncryptionKey []byte
	// SelfSignature is 1..MaxSelfSignatureLen opaque bytes.
	SelfSignature []byte
	// CreatedAt is set by PublishKeys when zero; UTC, microseconds.
	CreatedAt time.Time
}

// Room is a named group of users.
type Room struct {
	// ID is assigned by CreateRoom (a random UUID) when zero.
	ID uuid.UUID
	// Name follows the user-name rules with up to MaxRoomNameLen characters;
	// stored lower-case and unique case-insensitively.
	Name string
	// CreatedBy is the ID of an existing user, or uuid.Nil for a room an
	// anonymous connection made (stored as NULL). Creating a room does not
	// make its creator a member; call AddMember.
	CreatedBy uuid.UUID
	// CreatedAt is set by CreateRoom when zero; UTC, microseconds.
	CreatedAt time.Time
}

// Store is the durable state of the server. Every method validates its input
// before running any SQL; errors match ErrNotFound, ErrConflict or ErrInvalid
// where those apply. Implementations are safe for concurrent use.
type Store interface {
	HistoryStore
	DeviceStore

	// CreateUser stores a new user and returns it with ID and CreatedAt
	// filled in, Generation 1 and Name lower-cased. ErrConflict if the name
	// (or ID) is taken.
	CreateUser(ctx context.Context, u User) (User, error)
	// CreateUserWithKeys creates u and publishes k (UserID is ignored and
	// set to the new user's; Version becomes 1) in one transaction: either
	// both are stored or neither. Errors as CreateUser and PublishKeys.
	CreateUserWithKeys(ctx context.Context, u User, k KeySet) (User, KeySet, error)
	// UserByName finds a user by name, case-insensitively. A name that could
	// never be valid is ErrInvalid rather than ErrNotFound.
	UserByName(ctx context.Context, name string) (User, error)
	// UserByID finds a user by ID.
	UserByID(ctx context.Context, id uuid.UUID) (User, error)
	// SetPasswordHash replaces a user's password hash with another hash of
	// the same password (the rehash-on-login upgrade of its parameters). It
	// leaves Generation alone: the credentials did not change.
	SetPasswordHash(ctx context.Context, id uuid.UUID, hash string) error
	// ChangePassword replaces a user's password hash with the hash of a new
	// password and adds one to the user's Generation, in one statement, and
	// returns the new generation. Concurrent changes get distinct
	// generations; the last one's hash stays.
	ChangePassword(ctx context.Context, id uuid.UUID, hash string) (generation int64, err error)

	// PublishKeys stores a new key version for k.UserID (the previous
	// version plus one; the first is 1) and returns it. Concurrent calls for
	// one user get distinct, consecutive versions. Storing a version after
	// the first also adds one to the user's Generation, in the same
	// transaction; generation is the user's Generation once the version is
	// stored (unchanged for version 1).
	PublishKeys(ctx context.Context, k KeySet) (_ KeySet, generation int64, err error)
	// CurrentKeys returns the user's highest key version; ErrNotFound when
	// the user is unknown or has published none.
	CurrentKeys(ctx context.Context, userID uuid.UUID) (KeySet, error)
	// KeyHistory returns every key version of the user, oldest first; empty
	// (not an error) for a user who has published none.
	KeyHistory(ctx context.Context, userID uuid.UUID) ([]KeySet, error)

	// CreateRoom stores a new room and returns it with ID and CreatedAt
	// filled in and Name lower-cased. ErrConflict if the name is taken,
	// ErrNotFound if CreatedBy is neither uuid.Nil nor a user.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// RoomByName finds a room by name, case-insensitively.
	RoomByName(ctx context.Context, name string) (Room, error)
	// AddMember makes the user a member of the room. Adding a member twice is
	// not an error. ErrNotFound if the room or the user does not exist.
	AddMember(ctx context.Context, roomID, userID uuid.UUID) error
	// RemoveMember removes the user from the room. Removing a non-member is
	// not an error. ErrNotFound if the room or the user does not exist.
	RemoveMember(ctx context.Context, roomID, userID uuid.UUID) error
	// Members returns the room's members sorted by name. PasswordHash is
	// left empty: lists never carry credentials.
	Members(ctx context.Context, roomID uuid.UUID) ([]User, error)
	// RoomsOf returns the rooms the user is a member of, sorted by name.
	RoomsOf(ctx context.Context, userID uuid.UUID) ([]Room, error)
	// Contacts returns the users who share at least one room with userID,
	// each once, sorted by name, without userID itself: they are the ones
	// told when userID's keys change. PasswordHash is left empty.
	Contacts(ctx context.Context, userID uuid.UUID) ([]User, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database. The Store is unusable afterwards.
	Close() error
}

// Open opens the store that dsn names and applies pending migrations:
//
//   - "postgres://..." or "postgresql://...": PostgreSQL (OpenPostgres).
//   - "sqlite://PATH", "file:PATH" or "file://PATH": SQLite at PATH.
//   - "": SQLite at dataDir/messenger.db; dataDir is created (0700) if missing.
//
// Any other dsn is an error rather than a silent fallback to SQLite, so a
// mistyped production URL cannot start the server on an empty local database.
// opts go to the backend (WithKeyring).
func Open(ctx context.Context, dsn, dataDir string, opts ...Option) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgres(ctx, dsn, opts...)
	case strings.HasPrefix(dsn, "sqlite://"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"), opts...)
	case strings.HasPrefix(dsn, "file://"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "file://"), opts...)
	case strings.HasPrefix(dsn, "file:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "file:"), opts...)
	case dsn == "":
		if dataDir == "" {
			return nil, errors.New("store: open: neither a dsn nor a data directory given")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
		return OpenSQLite(ctx, filepath.Join(dataDir, "messenger.db"), opts...)
	default:
		scheme, _, _ := strings.Cut(dsn, ":")
		return nil, fmt.Errorf("store: open: unsupported dsn scheme %q (want postgres://, postgresql://, sqlite:// or file:)", scheme)
	}
}

// normalizeName checks a user or room name and returns it lower-cased.
// Only ASCII is accepted, and only ASCII is lower-cased: strings.ToLower
// would turn the Kelvin sign U+212A into "k" and let look-alikes through.
func normalizeName(field, name string, maxLen int) (string, error) {
	if len(name) == 0 || len(name) > maxLen {
		return "", &FieldError{Field: field, Reason: fmt.Sprintf("must be 1..%d characters", maxLen)}
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c == '_' || c == '.' || c == '-':
			if i == 0 {
				return "", &FieldError{Field: field, Reason: "must start with a letter or digit"}
			}
		default:
			return "", &FieldError{Field: field, Reason: "may contain only a-z, 0-9, '_', '.' and '-'"}
		}
	}
	return string(b), nil
}

func checkPasswordHash(hash string) error {
	if len(hash) == 0 || len(hash) > MaxPasswordHashLen {
		return &FieldError{Field: "user.password_hash", Reason: fmt.Sprintf("must be 1..%d bytes", MaxPasswordHashLen)}
	}
	return nil
}

func checkBytes(field string, b []byte, maxLen int) error {
	if len(b) == 0 || len(b) > maxLen {
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be 1..%d bytes", maxLen)}
	}
	return nil
}

// prepareUser validates u and fills in the defaults CreateUser promises.
func prepareUser(u User) (User, error) {
	name, err := normalizeName("user.name", u.Name, MaxUserNameLen)
	if err != nil {
		return User{}, err
	}
	if err := checkPasswordHash(u.PasswordHash); err != nil {
		return User{}, err
	}
	u.Name = name
	if u.ID == uuid.Nil {
		u.ID = uuid.New()
	}
	u.CreatedAt = stamp(u.CreatedAt)
	u.Generation = 1
	return u, nil
}

// prepareKeySet validates k and fills in CreatedAt; Version is left for the
// backend to assign.
func prepareKeySet(k KeySet) (KeySet, error) {
	if err := checkBytes("keys.signing_key", k.SigningKey, MaxPublicKeyLen); err != nil {
		return KeySet{}, err
	}
	if err := checkBytes("keys.encryption_key", k.EncryptionKey, MaxPublicKeyLen); err != nil {
		return KeySet{}, err
	}
	if err := checkBytes("keys.self_signature", k.SelfSignature, MaxSelfSignatureLen); err != nil {
		return KeySet{}, err
	}
	k.Version = 0
	k.CreatedAt = stamp(k.CreatedAt)
	return k, nil
}

// prepareUserWithKeys validates u and k for CreateUserWithKeys: k becomes
// the new user's version 1.
func prepareUserWithKeys(u User, k KeySet) (User, KeySet, error) {
	u, err := prepareUser(u)
	if err != nil {
		return User{}, KeySet{}, fmt.Errorf("store: create user with keys: %w", err)
	}
	k.UserID = u.ID
	if k, err = prepareKeySet(k); err != nil {
		return User{}, KeySet{}, fmt.Errorf("store: create user with keys: %w", err)
	}
	k.Version = 1
	return u, k, nil
}

// prepareRoom validates r and fills in the defaults CreateRoom promises.
func prepareRoom(r Room) (Room, error) {
	name, err := normalizeName("room.name", r.Name, MaxRoomNameLen)
	if err != nil {
		return Room{}, err
	}
	r.Name = name
	if r.ID == uuid.Nil {
		r.ID = uuid.New()
	}
	r.CreatedAt = stamp(r.CreatedAt)
	return r, nil
}

// roomCreator is the value stored in rooms.created_by: NULL for a room
// without a creating account.
func roomCreator(id uuid.UUID) uuid.NullUUID {
	return uuid.NullUUID{UUID: id, Valid: id != uuid.Nil}
}

// stamp returns t, or the current time if t is zero, in the form both
// backends store exactly: UTC, truncated to microseconds, no monotonic reading.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Truncate(time.Microsecond)
}
