package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// rowCounter is implemented, in the backend test files, by each Store
// implementation: the contract test uses it to check that a rejected call
// wrote nothing.
type rowCounter interface {
	countRows(ctx context.Context, table string) (int, error)
}

// testStore is the contract every Store implementation must meet. open
// returns a new, empty, migrated store opened with opts and arranges for
// it to be closed.
func testStore(t *testing.T, open func(t *testing.T, opts ...Option) Store) {
	for _, c := range contractCases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, open(t))
		})
	}
	for _, c := range historyCases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newHistoryEnv(t, open))
		})
	}
}

var contractCases = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"CreateUserAndLookUp", testCreateUserAndLookUp},
	{"CreateUserKeepsGivenIDAndTime", testCreateUserKeepsGivenIDAndTime},
	{"DuplicateUser", testDuplicateUser},
	{"InvalidUser", testInvalidUser},
	{"UserLimits", testUserLimits},
	{"LookUpInvalidName", testLookUpInvalidName},
	{"HostileBytesRoundTrip", testHostileBytesRoundTrip},
	{"SetPasswordHash", testSetPasswordHash},
	{"Generation", testGeneration},
	{"ConcurrentCredentialChanges", testConcurrentCredentialChanges},
	{"UnknownIDs", testUnknownIDs},
	{"PublishKeys", testPublishKeys},
	{"CreateUserWithKeys", testCreateUserWithKeys},
	{"NoKeysYet", testNoKeysYet},
	{"InvalidKeys", testInvalidKeys},
	{"ConcurrentPublishKeys", testConcurrentPublishKeys},
	{"Rooms", testRooms},
	{"Membership", testMembership},
	{"Contacts", testContacts},
	{"ConcurrentCreateSameName", testConcurrentCreateSameName},
	{"Ping", testPing},
}

const testHash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g"

func mustCreateUser(t *testing.T, s Store, name string) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), User{Name: name, PasswordHash: testHash + name})
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func mustCreateRoom(t *testing.T, s Store, name string, by User) Room {
	t.Helper()
	r, err := s.CreateRoom(context.Background(), Room{Name: name, CreatedBy: by.ID})
	if err != nil {
		t.Fatalf("CreateRoom(%q): %v", name, err)
	}
	return r
}

func mustAddMember(t *testing.T, s Store, r Room, u User) {
	t.Helper()
	if err := s.AddMember(context.Background(), r.ID, u.ID); err != nil {
		t.Fatalf("AddMember(%s, %s): %v", r.Name, u.Name, err)
	}
}

func testKeys(userID uuid.UUID, tag string) KeySet {
	return KeySet{
		UserID:        userID,
		SigningKey:    []byte("signing-key-" + tag),
		EncryptionKey: []byte("encryption-key-" + tag),
		SelfSignature: []byte("self-signature-" + tag),
	}
}

func countRows(t *testing.T, s Store, table string) int {
	t.Helper()
	rc, ok := s.(rowCounter)
	if !ok {
		t.Fatalf("%T does not implement rowCounter (add countRows to its test file)", s)
	}
	n, err := rc.countRows(context.Background(), table)
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// public is u as list methods return it: without the password hash.
func public(us ...User) []User {
	out := []User{}
	for _, u := range us {
		u.PasswordHash = ""
		out = append(out, u)
	}
	return out
}

func names[T User | Room](xs []T) []string {
	out := []string{}
	for _, x := range xs {
		switch v := any(x).(type) {
		case User:
			out = append(out, v.Name)
		case Room:
			out = append(out, v.Name)
		}
	}
	return out
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

func testCreateUserAndLookUp(t *testing.T, s Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Millisecond)
	u, err := s.CreateUser(ctx, User{Name: "Alice_01.x-Y", PasswordHash: testHash})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "alice_01.x-y" {
		t.Errorf("Name = %q, want it lower-cased to %q", u.Name, "alice_01.x-y")
	}
	if u.ID == uuid.Nil || u.ID.Version() != 4 {
		t.Errorf("ID = %v, want a random (v4) UUID", u.ID)
	}
	if u.PasswordHash != testHash {
		t.Errorf("PasswordHash = %q, want %q", u.PasswordHash, testHash)
	}
	if u.CreatedAt.Before(before) || u.CreatedAt.After(after) || u.CreatedAt.Location() != time.UTC ||
		u.CreatedAt.Nanosecond()%1000 != 0 {
		t.Errorf("CreatedAt = %v, want now (%v..%v) in UTC, whole microseconds", u.CreatedAt, before, after)
	}

	lookups := []struct {
		name   string
		lookup func() (User, error)
	}{
		{"by stored name", func() (User, error) { return s.UserByName(ctx, "alice_01.x-y") }},
		{"by name as created", func() (User, error) { return s.UserByName(ctx, "Alice_01.x-Y") }},
		{"by upper-case name", func() (User, error) { return s.UserByName(ctx, "ALICE_01.X-Y") }},
		{"by id", func() (User, error) { return s.UserByID(ctx, u.ID) }},
	}
	for _, l := range lookups {
		t.Run(l.name, func(t *testing.T) {
			got, err := l.lookup()
			if err != nil {
				t.Fatal(err)
			}
			if got != u {
				t.Errorf("got %+v, want %+v", got, u)
			}
		})
	}
}

func testCreateUserKeepsGivenIDAndTime(t *testing.T, s Store) {
	ctx := context.Background()
	id := uuid.MustParse("0b5e6a52-2f1c-4d0e-9b7a-3c1f8e2d4a60")
	at := time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+1", 3600))
	u, err := s.CreateUser(ctx, User{ID: id, Name: "carol", PasswordHash: testHash, CreatedAt: at, Generation: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := User{ID: id, Name: "carol", PasswordHash: testHash,
		CreatedAt: time.Date(2021, 3, 4, 4, 6, 7, 123456000, time.UTC), Generation: 1}
	if u != want {
		t.Errorf("CreateUser returned %+v, want %+v", u, want)
	}
	got, err := s.UserByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("UserByID = %+v, want %+v", got, want)
	}
}

func testDuplicateUser(t *testing.T, s Store) {
	ctx := context.Background()
	first := mustCreateUser(t, s, "bob")
	cases := []struct {
		name string
		user User
	}{
		{"same name", User{Name: "bob", PasswordHash: "other"}},
		{"upper-case name", User{Name: "BOB", PasswordHash: "other"}},
		{"mixed-case name", User{Name: "Bob", PasswordHash: "other"}},
		{"same id, other name", User{ID: first.ID, Name: "robert", PasswordHash: "other"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.CreateUser(ctx, c.user)
			wantErr(t, "CreateUser", err, ErrConflict)
			got, err := s.UserByName(ctx, "bob")
			if err != nil || got != first {
				t.Errorf("after the duplicate: UserByName = %+v, %v; want the first user %+v unchanged", got, err, first)
			}
			if n := countRows(t, s, "users"); n != 1 {
				t.Errorf("users has %d rows, want 1", n)
			}
		})
	}
}

func testInvalidUser(t *testing.T, s Store) {
	ctx := context.Background()
	cases := []struct {
		name, userName, hash, field string
	}{
		{"empty name", "", testHash, "user.name"},
		{"name too long", strings.Repeat("a", MaxUserNameLen+1), testHash, "user.name"},
		{"space in name", "a b", testHash, "user.name"},
		{"SQL in name", "a'; DROP TABLE users;--", testHash, "user.name"},
		{"quote in name", `a"b`, testHash, "user.name"},
		{"NUL in name", "a\x00b", testHash, "user.name"},
		{"non-ASCII name", "jürgen", testHash, "user.name"},
		{"Kelvin sign (lower-cases to k)", "\u212Aarl", testHash, "user.name"},
		{"leading dot", ".alice", testHash, "user.name"},
		{"leading dash", "-alice", testHash, "user.name"},
		{"leading underscore", "_alice", testHash, "user.name"},
		{"hash sign", "#alice", testHash, "user.name"},
		{"empty hash", "alice", "", "user.password_hash"},
		{"hash too long", "alice", strings.Repeat("h", MaxPasswordHashLen+1), "user.password_hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.CreateUser(ctx, User{Name: c.userName, PasswordHash: c.hash})
			wantErr(t, "CreateUser", err, ErrInvalid)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("error %v does not name field %s", err, c.field)
			}
			if n := countRows(t, s, "users"); n != 0 {
				t.Errorf("users has %d rows after a rejected CreateUser, want 0", n)
			}
		})
	}
}

func testUserLimits(t *testing.T, s Store) {
	ctx := context.Background()
	cases := []struct{ name, userName, hash string }{
		{"one character", "a", testHash},
		{"longest name", strings.Repeat("z", MaxUserNameLen), testHash},
		{"leading digit", "0day", testHash},
		{"every allowed character", "az09_.-AZ", testHash},
		{"longest hash", "hashy", strings.Repeat("h", MaxPasswordHashLen)},
		{"one-byte hash", "tiny", "h"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := s.CreateUser(ctx, User{Name: c.userName, PasswordHash: c.hash})
			if err != nil {
				t.Fatalf("CreateUser(%q, %d-byte hash): %v", c.userName, len(c.hash), err)
			}
			got, err := s.UserByName(ctx, c.userName)
			if err != nil || got != u {
				t.Errorf("UserByName = %+v, %v; want %+v", got, err, u)
			}
			if n := countRows(t, s, "users"); n != i+1 {
				t.Errorf("users has %d rows, want %d", n, i+1)
			}
		})
	}
}

func testLookUpInvalidName(t *testing.T, s Store) {
	ctx := context.Background()
	owner := mustCreateUser(t, s, "owner")
	mustCreateRoom(t, s, "lobby", owner)
	for _, name := range []string{"a'; DROP TABLE users;--", "' OR '1'='1", "x\x00", strings.Repeat("a", 65)} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, err := s.UserByName(ctx, name)
			wantErr(t, "UserByName", err, ErrInvalid)
			_, err = s.RoomByName(ctx, name)
			wantErr(t, "RoomByName", err, ErrInvalid)
			_, err = s.CreateRoom(ctx, Room{Name: name, CreatedBy: owner.ID})
			wantErr(t, "CreateRoom", err, ErrInvalid)
			if n := countRows(t, s, "users"); n != 1 {
				t.Errorf("users has %d rows, want 1", n)
			}
			if n := countRows(t, s, "rooms"); n != 1 {
				t.Errorf("rooms has %d rows, want 1", n)
			}
		})
	}
}

// hostile holds every byte value plus the SQL metacharacters an injected
// value would need, and is not valid UTF-8.
func hostile(prefix string) []byte {
	b := []byte(prefix + `'; DROP TABLE users;-- " \ %_ ` + "\x00\r\n\xff\xfe")
	for i := range 256 {
		b = append(b, byte(i))
	}
	return b
}

func testHostileBytesRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	hash := "$argon2id$v=19$m=65536,t=3,p=4$" + string(hostile(""))[:200]
	u, err := s.CreateUser(ctx, User{Name: "mallory", PasswordHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	keys := KeySet{
		UserID:        u.ID,
		SigningKey:    hostile("sig"),
		EncryptionKey: hostile("enc"),
		SelfSignature: hostile("self"),
	}
	published, _, err := s.PublishKeys(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	newHash := string(hostile("rehash"))[:MaxPasswordHashLen]

	checks := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"password hash by name", func(t *testing.T) {
			got, err := s.UserByName(ctx, "mallory")
			if err != nil || got.PasswordHash != hash {
				t.Errorf("UserByName: hash %q, %v; want %q", got.PasswordHash, err, hash)
			}
		}},
		{"password hash by id", func(t *testing.T) {
			got, err := s.UserByID(ctx, u.ID)
			if err != nil || got.PasswordHash != hash {
				t.Errorf("UserByID: hash %q, %v; want %q", got.PasswordHash, err, hash)
			}
		}},
		{"current keys", func(t *testing.T) {
			got, err := s.CurrentKeys(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.SigningKey, keys.SigningKey) || !bytes.Equal(got.EncryptionKey, keys.EncryptionKey) ||
				!bytes.Equal(got.SelfSignature, keys.SelfSignature) {
				t.Errorf("CurrentKeys bytes differ from what was published:\n got %q %q %q\nwant %q %q %q",
					got.SigningKey, got.EncryptionKey, got.SelfSignature, keys.SigningKey, keys.EncryptionKey, keys.SelfSignature)
			}
			if !reflect.DeepEqual(got, published) {
				t.Errorf("CurrentKeys = %+v, want %+v", got, published)
			}
		}},
		{"key history", func(t *testing.T) {
			got, err := s.KeyHistory(ctx, u.ID)
			if err != nil || !reflect.DeepEqual(got, []KeySet{published}) {
				t.Errorf("KeyHistory = %+v, %v; want [%+v]", got, err, published)
			}
		}},
		{"rehash", func(t *testing.T) {
			if err := s.SetPasswordHash(ctx, u.ID, newHash); err != nil {
				t.Fatal(err)
			}
			got, err := s.UserByID(ctx, u.ID)
			if err != nil || got.PasswordHash != newHash {
				t.Errorf("after SetPasswordHash: hash %q, %v; want %q", got.PasswordHash, err, newHash)
			}
		}},
		{"tables intact", func(t *testing.T) {
			if n := countRows(t, s, "users"); n != 1 {
				t.Errorf("users has %d rows, want 1", n)
			}
			if n := countRows(t, s, "key_sets"); n != 1 {
				t.Errorf("key_sets has %d rows, want 1", n)
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.name, c.check)
	}
}

func testSetPasswordHash(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "dave")
	cases := []struct {
		name     string
		id       uuid.UUID
		hash     string
		wantErr  error
		wantHash string // dave's hash afterwards
	}{
		{"upgrade", u.ID, testHash + "-v2", nil, testHash + "-v2"},
		{"unknown user", uuid.New(), testHash + "-v3", ErrNotFound, testHash + "-v2"},
		{"empty hash", u.ID, "", ErrInvalid, testHash + "-v2"},
		{"hash too long", u.ID, strings.Repeat("h", MaxPasswordHashLen+1), ErrInvalid, testHash + "-v2"},
		{"longest hash", u.ID, strings.Repeat("h", MaxPasswordHashLen), nil, strings.Repeat("h", MaxPasswordHashLen)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.SetPasswordHash(ctx, c.id, c.hash)
			if c.wantErr == nil && err != nil {
				t.Fatalf("SetPasswordHash: %v", err)
			}
			if c.wantErr != nil {
				wantErr(t, "SetPasswordHash", err, c.wantErr)
			}
			got, err := s.UserByID(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.PasswordHash != c.wantHash {
				t.Errorf("hash is %q, want %q", got.PasswordHash, c.wantHash)
			}
			// A rehash is the same password: the generation stays.
			if want := (User{ID: u.ID, Name: u.Name, PasswordHash: got.PasswordHash, CreatedAt: u.CreatedAt, Generation: 1}); got != want {
				t.Errorf("user is %+v, want only the hash changed: %+v", got, want)
			}
		})
	}
}

// testGeneration: the credential generation starts at 1 and goes up by
// one with every password change and every key version after the first,
// and with nothing else (a rehash of the same password included).
func testGeneration(t *testing.T, s Store) {
	ctx := context.Background()
	generation := func(t *testing.T, id uuid.UUID) int64 {
		t.Helper()
		byID, err := s.UserByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		byName, err := s.UserByName(ctx, byID.Name)
		if err != nil {
			t.Fatal(err)
		}
		if byName.Generation != byID.Generation {
			t.Fatalf("UserByName says generation %d, UserByID %d", byName.Generation, byID.Generation)
		}
		return byID.Generation
	}
	u := mustCreateUser(t, s, "gus")
	if u.Generation != 1 || generation(t, u.ID) != 1 {
		t.Fatalf("new user: generation %d, stored %d; want 1", u.Generation, generation(t, u.ID))
	}
	withKeys, _, err := s.CreateUserWithKeys(ctx, User{Name: "hal", PasswordHash: testHash}, testKeys(uuid.Nil, "h1"))
	if err != nil || withKeys.Generation != 1 || generation(t, withKeys.ID) != 1 {
		t.Fatalf("CreateUserWithKeys: %+v, %v; want generation 1", withKeys, err)
	}

	steps := []struct {
		name string
		do   func() (int64, error) // the generation it reports; 0 if none
		want int64
	}{
		{"first keys", func() (int64, error) { _, g, err := s.PublishKeys(ctx, testKeys(u.ID, "1")); return g, err }, 1},
		{"rehash", func() (int64, error) { return 0, s.SetPasswordHash(ctx, u.ID, testHash+"-rehashed") }, 1},
		{"password change", func() (int64, error) { return s.ChangePassword(ctx, u.ID, testHash+"-new") }, 2},
		{"second keys", func() (int64, error) { _, g, err := s.PublishKeys(ctx, testKeys(u.ID, "2")); return g, err }, 3},
		{"rehash again", func() (int64, error) { return 0, s.SetPasswordHash(ctx, u.ID, testHash+"-new-rehashed") }, 3},
		{"another password change", func() (int64, error) { return s.ChangePassword(ctx, u.ID, testHash+"-newer") }, 4},
		{"invalid hash", func() (int64, error) { return s.ChangePassword(ctx, u.ID, "") }, 4},
		{"hash too long", func() (int64, error) { return s.ChangePassword(ctx, u.ID, strings.Repeat("h", MaxPasswordHashLen+1)) }, 4},
		{"invalid keys", func() (int64, error) { _, g, err := s.PublishKeys(ctx, KeySet{UserID: u.ID}); return g, err }, 4},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			got, err := step.do()
			if strings.HasPrefix(step.name, "invalid") || strings.HasSuffix(step.name, "too long") {
				wantErr(t, step.name, err, ErrInvalid)
			} else if err != nil {
				t.Fatal(err)
			}
			if got != 0 && got != step.want {
				t.Errorf("reported generation %d, want %d", got, step.want)
			}
			if g := generation(t, u.ID); g != step.want {
				t.Errorf("stored generation %d, want %d", g, step.want)
			}
		})
	}
	t.Run("hash of the last change", func(t *testing.T) {
		got, err := s.UserByID(ctx, u.ID)
		if err != nil || got.PasswordHash != testHash+"-newer" {
			t.Errorf("hash %q, %v; want %q", got.PasswordHash, err, testHash+"-newer")
		}
	})
	t.Run("others untouched", func(t *testing.T) {
		if g := generation(t, withKeys.ID); g != 1 {
			t.Errorf("hal's generation %d, want 1", g)
		}
	})
	t.Run("lists carry it", func(t *testing.T) {
		r := mustCreateRoom(t, s, "gen", u)
		mustAddMember(t, s, r, u)
		mustAddMember(t, s, r, withKeys)
		ms, err := s.Members(ctx, r.ID)
		if err != nil || len(ms) != 2 || ms[0].Generation != 4 || ms[1].Generation != 1 {
			t.Errorf("Members = %+v, %v; want gus at generation 4, hal at 1", ms, err)
		}
		cs, err := s.Contacts(ctx, withKeys.ID)
		if err != nil || len(cs) != 1 || cs[0].Generation != 4 {
			t.Errorf("Contacts = %+v, %v; want gus at generation 4", cs, err)
		}
	})
}

// testConcurrentCredentialChanges: password changes and key publications
// racing for one user each get a generation of their own, and none is lost.
func testConcurrentCredentialChanges(t *testing.T, s Store) {
	ctx := context.Background()
	u, _, err := s.CreateUserWithKeys(ctx, User{Name: "ivy", PasswordHash: testHash}, testKeys(uuid.Nil, "0"))
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 6, 4
	gens := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			for r := range rounds {
				var g int64
				var err error
				if i%2 == 0 {
					g, err = s.ChangePassword(ctx, u.ID, fmt.Sprint(testHash, i, "-", r))
				} else {
					_, g, err = s.PublishKeys(ctx, testKeys(u.ID, fmt.Sprint(i, "-", r)))
				}
				if err != nil {
					errs[i] = fmt.Errorf("round %d: %w", r, err)
					return
				}
				gens[i] = append(gens[i], g)
			}
		})
	}
	close(start)
	wg.Wait()
	seen := map[int64]int{}
	for i := range workers {
		if errs[i] != nil {
			t.Errorf("worker %d: %v", i, errs[i])
		}
		for _, g := range gens[i] {
			seen[g]++
		}
	}
	const n = workers * rounds
	for g := int64(2); g <= n+1; g++ {
		if seen[g] != 1 {
			t.Errorf("generation %d was returned %d times, want once; got %v", g, seen[g], gens)
		}
	}
	if got, err := s.UserByID(ctx, u.ID); err != nil || got.Generation != n+1 {
		t.Errorf("final generation %d, %v; want %d", got.Generation, err, n+1)
	}
}

func testUnknownIDs(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "erin")
	r := mustCreateRoom(t, s, "known", u)
	nobody := uuid.New()
	cases := []struct {
		name string
		call func() error
	}{
		{"UserByID", func() error { _, err := s.UserByID(ctx, nobody); return err }},
		{"UserByName", func() error { _, err := s.UserByName(ctx, "nobody"); return err }},
		{"SetPasswordHash", func() error { return s.SetPasswordHash(ctx, nobody, testHash) }},
		{"ChangePassword", func() error { _, err := s.ChangePassword(ctx, nobody, testHash); return err }},
		{"PublishKeys", func() error { _, _, err := s.PublishKeys(ctx, testKeys(nobody, "x")); return err }},
		{"PublishKeys nil user", func() error { _, _, err := s.PublishKeys(ctx, testKeys(uuid.Nil, "x")); return err }},
		{"CurrentKeys", func() error { _, err := s.CurrentKeys(ctx, nobody); return err }},
		{"KeyHistory", func() error { _, err := s.KeyHistory(ctx, nobody); return err }},
		{"CreateRoom unknown creator", func() error { _, err := s.CreateRoom(ctx, Room{Name: "orphan", CreatedBy: nobody}); return err }},
		{"RoomByName", func() error { _, err := s.RoomByName(ctx, "nowhere"); return err }},
		{"AddMember unknown room", func() error { return s.AddMember(ctx, nobody, u.ID) }},
		{"AddMember unknown user", func() error { return s.AddMember(ctx, r.ID, nobody) }},
		{"RemoveMember unknown room", func() error { return s.RemoveMember(ctx, nobody, u.ID) }},
		{"RemoveMember unknown user", func() error { return s.RemoveMember(ctx, r.ID, nobody) }},
		{"Members", func() error { _, err := s.Members(ctx, nobody); return err }},
		{"RoomsOf", func() error { _, err := s.RoomsOf(ctx, nobody); return err }},
		{"Contacts", func() error { _, err := s.Contacts(ctx, nobody); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, c.name, c.call(), ErrNotFound)
		})
	}
	t.Run("nothing written", func(t *testing.T) {
		for table, want := range map[string]int{"users": 1, "rooms": 1, "key_sets": 0, "room_members": 0} {
			if n := countRows(t, s, table); n != want {
				t.Errorf("%s has %d rows, want %d", table, n, want)
			}
		}
	})
}

func testPublishKeys(t *testing.T, s Store) {
	ctx := context.Background()
	frank := mustCreateUser(t, s, "frank")
	grace := mustCreateUser(t, s, "grace")

	v1, _, err := s.PublishKeys(ctx, testKeys(frank.ID, "1"))
	if err != nil {
		t.Fatal(err)
	}
	in2 := testKeys(frank.ID, "2")
	in2.Version = 99 // assigned by the store; ignored
	in2.CreatedAt = time.Date(2030, 1, 2, 3, 4, 5, 6789, time.UTC)
	v2, _, err := s.PublishKeys(ctx, in2)
	if err != nil {
		t.Fatal(err)
	}
	g1, _, err := s.PublishKeys(ctx, testKeys(grace.ID, "g"))
	if err != nil {
		t.Fatal(err)
	}

	checks := []struct {
		name      string
		got, want any
	}{
		{"first version", v1.Version, 1},
		{"second version", v2.Version, 2},
		{"second created at", v2.CreatedAt, time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)},
		{"second keys", string(v2.SigningKey), "signing-key-2"},
		{"other user starts at 1", g1.Version, 1},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
	t.Run("current is v2", func(t *testing.T) {
		cur, err := s.CurrentKeys(ctx, frank.ID)
		if err != nil || !reflect.DeepEqual(cur, v2) {
			t.Errorf("CurrentKeys = %+v, %v; want %+v", cur, err, v2)
		}
	})
	t.Run("history is v1 v2", func(t *testing.T) {
		hist, err := s.KeyHistory(ctx, frank.ID)
		if err != nil || !reflect.DeepEqual(hist, []KeySet{v1, v2}) {
			t.Errorf("KeyHistory = %+v, %v; want [%+v %+v]", hist, err, v1, v2)
		}
	})
	t.Run("other user's history", func(t *testing.T) {
		hist, err := s.KeyHistory(ctx, grace.ID)
		if err != nil || !reflect.DeepEqual(hist, []KeySet{g1}) {
			t.Errorf("KeyHistory = %+v, %v; want [%+v]", hist, err, g1)
		}
	})
}

func testNoKeysYet(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "heidi")
	_, err := s.CurrentKeys(ctx, u.ID)
	wantErr(t, "CurrentKeys", err, ErrNotFound)
	hist, err := s.KeyHistory(ctx, u.ID)
	if err != nil || hist == nil || len(hist) != 0 {
		t.Errorf("KeyHistory = %#v, %v; want an empty, non-nil list", hist, err)
	}
}

func testInvalidKeys(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "ivan")
	big := func(n int) []byte { return bytes.Repeat([]byte{0x30}, n) }
	cases := []struct {
		name   string
		mutate func(*KeySet)
		field  string
	}{
		{"nil signing key", func(k *KeySet) { k.SigningKey = nil }, "keys.signing_key"},
		{"empty signing key", func(k *KeySet) { k.SigningKey = []byte{} }, "keys.signing_key"},
		{"signing key too long", func(k *KeySet) { k.SigningKey = big(MaxPublicKeyLen + 1) }, "keys.signing_key"},
		{"nil encryption key", func(k *KeySet) { k.EncryptionKey = nil }, "keys.encryption_key"},
		{"encryption key too long", func(k *KeySet) { k.EncryptionKey = big(MaxPublicKeyLen + 1) }, "keys.encryption_key"},
		{"nil self-signature", func(k *KeySet) { k.SelfSignature = nil }, "keys.self_signature"},
		{"self-signature too long", func(k *KeySet) { k.SelfSignature = big(MaxSelfSignatureLen + 1) }, "keys.self_signature"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := testKeys(u.ID, "x")
			c.mutate(&k)
			_, _, err := s.PublishKeys(ctx, k)
			wantErr(t, "PublishKeys", err, ErrInvalid)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("error %v does not name field %s", err, c.field)
			}
			if n := countRows(t, s, "key_sets"); n != 0 {
				t.Errorf("key_sets has %d rows after a rejected PublishKeys, want 0", n)
			}
		})
	}
	t.Run("largest accepted", func(t *testing.T) {
		k := KeySet{UserID: u.ID, SigningKey: big(MaxPublicKeyLen), EncryptionKey: big(MaxPublicKeyLen),
			SelfSignature: big(MaxSelfSignatureLen)}
		got, _, err := s.PublishKeys(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 1 {
			t.Errorf("Version = %d, want 1 (no earlier attempt may have been stored)", got.Version)
		}
	})
}

func testConcurrentPublishKeys(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "judy")
	// Several rounds per publisher, so that they overlap on warm connections
	// rather than being spread out by connection set-up.
	const publishers, rounds = 8, 5
	versions := make([][]int, publishers)
	generations := make([][]int64, publishers)
	errs := make([]error, publishers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range publishers {
		wg.Go(func() {
			<-start
			for r := range rounds {
				k, gen, err := s.PublishKeys(ctx, testKeys(u.ID, fmt.Sprint(i, "-", r)))
				if err != nil {
					errs[i] = fmt.Errorf("round %d: %w", r, err)
					return
				}
				versions[i] = append(versions[i], k.Version)
				generations[i] = append(generations[i], gen)
			}
		})
	}
	close(start)
	wg.Wait()
	seen := map[int]int{}
	for i := range publishers {
		if errs[i] != nil {
			t.Errorf("publisher %d: %v", i, errs[i])
		}
		for _, v := range versions[i] {
			seen[v]++
		}
	}
	// Version 1 leaves the generation at 1 and every later version adds
	// one, in the same transaction: each version comes with its own
	// generation, equal to it.
	for i := range publishers {
		for j, v := range versions[i] {
			if gen := generations[i][j]; gen != int64(v) {
				t.Errorf("publisher %d: version %d came with generation %d, want %d", i, v, gen, v)
			}
		}
	}
	const n = publishers * rounds
	for v := 1; v <= n; v++ {
		if seen[v] != 1 {
			t.Errorf("version %d was returned %d times, want once; got %v", v, seen[v], versions)
		}
	}
	hist, err := s.KeyHistory(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range hist {
		if k.Version != i+1 {
			t.Errorf("history[%d].Version = %d, want %d", i, k.Version, i+1)
		}
	}
	if len(hist) != n {
		t.Errorf("history has %d versions, want %d", len(hist), n)
	}
}

func testRooms(t *testing.T, s Store) {
	ctx := context.Background()
	owner := mustCreateUser(t, s, "ken")
	general, err := s.CreateRoom(ctx, Room{Name: "General", CreatedBy: owner.ID})
	if err != nil {
		t.Fatal(err)
	}
	if general.Name != "general" || general.ID.Version() != 4 || general.CreatedBy != owner.ID ||
		general.CreatedAt.Location() != time.UTC || general.CreatedAt.IsZero() {
		t.Errorf("CreateRoom returned %+v", general)
	}
	for _, name := range []string{"general", "GENERAL", "General"} {
		t.Run("look up "+name, func(t *testing.T) {
			got, err := s.RoomByName(ctx, name)
			if err != nil || got != general {
				t.Errorf("RoomByName = %+v, %v; want %+v", got, err, general)
			}
		})
	}
	for _, name := range []string{"general", "GENERAL"} {
		t.Run("duplicate "+name, func(t *testing.T) {
			_, err := s.CreateRoom(ctx, Room{Name: name, CreatedBy: owner.ID})
			wantErr(t, "CreateRoom", err, ErrConflict)
		})
	}
	invalid := []struct{ name, roomName string }{
		{"empty", ""},
		{"too long", strings.Repeat("r", MaxRoomNameLen+1)},
		{"leading hash", "#general"},
		{"space", "the lobby"},
		{"SQL", "x'); DELETE FROM rooms;--"},
		{"leading dot", ".hidden"},
	}
	for _, c := range invalid {
		t.Run("invalid "+c.name, func(t *testing.T) {
			_, err := s.CreateRoom(ctx, Room{Name: c.roomName, CreatedBy: owner.ID})
			wantErr(t, "CreateRoom", err, ErrInvalid)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "room.name" {
				t.Errorf("error %v does not name field room.name", err)
			}
		})
	}
	t.Run("longest name", func(t *testing.T) {
		long := strings.Repeat("r", MaxRoomNameLen)
		r, err := s.CreateRoom(ctx, Room{Name: long, CreatedBy: owner.ID})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.RoomByName(ctx, long)
		if err != nil || got != r {
			t.Errorf("RoomByName = %+v, %v; want %+v", got, err, r)
		}
	})
	t.Run("row count", func(t *testing.T) {
		if n := countRows(t, s, "rooms"); n != 2 {
			t.Errorf("rooms has %d rows, want 2 (general and the longest name)", n)
		}
	})
}

func testMembership(t *testing.T, s Store) {
	ctx := context.Background()
	carol := mustCreateUser(t, s, "carol")
	alice := mustCreateUser(t, s, "alice")
	bob := mustCreateUser(t, s, "bob")
	zeta := mustCreateRoom(t, s, "zeta", alice)
	alpha := mustCreateRoom(t, s, "alpha", bob)
	mid := mustCreateRoom(t, s, "mid", carol)
	empty := mustCreateRoom(t, s, "empty", carol)

	steps := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"add, twice is fine", func(t *testing.T) {
			for _, u := range []User{carol, alice, bob, alice, carol} {
				mustAddMember(t, s, zeta, u)
			}
			if n := countRows(t, s, "room_members"); n != 3 {
				t.Errorf("room_members has %d rows, want 3", n)
			}
		}},
		{"members sorted by name, without hashes", func(t *testing.T) {
			got, err := s.Members(ctx, zeta.ID)
			if want := public(alice, bob, carol); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Members = %+v, %v; want %+v", got, err, want)
			}
		}},
		{"rooms of sorted by name", func(t *testing.T) {
			mustAddMember(t, s, mid, alice)
			mustAddMember(t, s, alpha, alice)
			got, err := s.RoomsOf(ctx, alice.ID)
			if want := []Room{alpha, mid, zeta}; err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("RoomsOf = %+v, %v; want %+v", got, err, want)
			}
		}},
		{"remove, twice is fine", func(t *testing.T) {
			for range 2 {
				if err := s.RemoveMember(ctx, zeta.ID, bob.ID); err != nil {
					t.Fatalf("RemoveMember: %v", err)
				}
			}
			got, err := s.Members(ctx, zeta.ID)
			if want := public(alice, carol); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Members = %+v, %v; want %+v", got, err, want)
			}
		}},
		{"removing a non-member", func(t *testing.T) {
			if err := s.RemoveMember(ctx, empty.ID, bob.ID); err != nil {
				t.Errorf("RemoveMember of a non-member: %v", err)
			}
		}},
		{"no rooms", func(t *testing.T) {
			got, err := s.RoomsOf(ctx, bob.ID)
			if err != nil || got == nil || len(got) != 0 {
				t.Errorf("RoomsOf = %#v, %v; want an empty, non-nil list", got, err)
			}
		}},
		{"empty room", func(t *testing.T) {
			got, err := s.Members(ctx, empty.ID)
			if err != nil || got == nil || len(got) != 0 {
				t.Errorf("Members = %#v, %v; want an empty, non-nil list", got, err)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.check) {
			return // later steps build on this one
		}
	}
}

func testContacts(t *testing.T, s Store) {
	ctx := context.Background()
	users := map[string]User{}
	for _, n := range []string{"alice", "bob", "carol", "dave", "eve", "frank"} {
		users[n] = mustCreateUser(t, s, n)
	}
	rooms := map[string][]string{
		"r1": {"alice", "bob", "carol"},
		"r2": {"alice", "bob", "dave"}, // bob shares two rooms with alice: listed once
		"r3": {"eve"},
	}
	for room, members := range rooms {
		r := mustCreateRoom(t, s, room, users["alice"])
		for _, m := range members {
			mustAddMember(t, s, r, users[m])
		}
	}
	cases := []struct {
		user string
		want []string
	}{
		{"alice", []string{"bob", "carol", "dave"}},
		{"bob", []string{"alice", "carol", "dave"}},
		{"carol", []string{"alice", "bob"}},
		{"dave", []string{"alice", "bob"}},
		{"eve", []string{}},   // alone in a room
		{"frank", []string{}}, // in no room
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			got, err := s.Contacts(ctx, users[c.user].ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), c.want) {
				t.Errorf("Contacts = %v, want %v", names(got), c.want)
			}
			var want []User
			for _, n := range c.want {
				want = append(want, users[n])
			}
			if !reflect.DeepEqual(got, public(want...)) {
				t.Errorf("Contacts = %+v, want %+v", got, public(want...))
			}
		})
	}
}

func testConcurrentCreateSameName(t *testing.T, s Store) {
	ctx := context.Background()
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.CreateUser(ctx, User{Name: "Racer", PasswordHash: fmt.Sprintf("%s-%d", testHash, i)})
		})
	}
	close(start)
	wg.Wait()
	var ok, conflicts int
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			winner = i
		case errors.Is(err, ErrConflict):
			conflicts++
		default:
			t.Errorf("CreateUser %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d succeeded and %d conflicted, want 1 and %d", ok, conflicts, n-1)
	}
	got, err := s.UserByName(ctx, "racer")
	if err != nil || got.PasswordHash != fmt.Sprintf("%s-%d", testHash, winner) {
		t.Errorf("stored user %+v, %v; want the winner's (%d)", got, err, winner)
	}
	if c := countRows(t, s, "users"); c != 1 {
		t.Errorf("users has %d rows, want 1", c)
	}
}

func testPing(t *testing.T, s Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping with a cancelled context succeeded")
	}
}

// testCreateUserWithKeys: the user and the first key version are stored
// together or not at all.
func testCreateUserWithKeys(t *testing.T, s Store) {
	ctx := context.Background()
	u, k, err := s.CreateUserWithKeys(ctx, User{Name: "Carol", PasswordHash: testHash}, testKeys(uuid.Nil, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "carol" || u.ID == uuid.Nil || k.UserID != u.ID || k.Version != 1 {
		t.Fatalf("created %+v with keys v%d for %v", u, k.Version, k.UserID)
	}
	cur, err := s.CurrentKeys(ctx, u.ID)
	if err != nil || cur.Version != 1 || string(cur.SigningKey) != "signing-key-c1" {
		t.Fatalf("current keys: %+v, %v", cur, err)
	}
	users, keys := countRows(t, s, "users"), countRows(t, s, "key_sets")

	// A taken name: neither the user nor the keys are written.
	if _, _, err := s.CreateUserWithKeys(ctx, User{Name: "carol", PasswordHash: testHash}, testKeys(uuid.Nil, "c2")); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate: %v, want ErrConflict", err)
	}
	// Invalid keys: nothing written either, not even the (valid) user.
	bad := testKeys(uuid.Nil, "d")
	bad.SigningKey = nil
	if _, _, err := s.CreateUserWithKeys(ctx, User{Name: "dave", PasswordHash: testHash}, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid keys: %v, want ErrInvalid", err)
	}
	if _, err := s.UserByName(ctx, "dave"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("user with invalid keys was stored: %v", err)
	}
	if got := countRows(t, s, "users"); got != users {
		t.Fatalf("users: %d rows, want %d", got, users)
	}
	if got := countRows(t, s, "key_sets"); got != keys {
		t.Fatalf("key_sets: %d rows, want %d", got, keys)
	}
	// Later versions follow on as usual.
	k2, _, err := s.PublishKeys(ctx, testKeys(u.ID, "c3"))
	if err != nil || k2.Version != 2 {
		t.Fatalf("next version: %+v, %v", k2, err)
	}
}
