package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
)

func init() {
	contractCases = append(contractCases,
		struct {
			name string
			run  func(t *testing.T, s Store)
		}{"Devices", testDevices},
		struct {
			name string
			run  func(t *testing.T, s Store)
		}{"DeviceLimit", testDeviceLimit},
		struct {
			name string
			run  func(t *testing.T, s Store)
		}{"CreateUserWithDevice", testCreateUserWithDevice},
	)
}

func testDevice(userID uuid.UUID, tag string) Device {
	return Device{
		ID:            uuid.New(),
		UserID:        userID,
		Name:          "dev " + tag,
		SigningKey:    []byte("signing-key-" + tag),
		EncryptionKey: []byte("encryption-key-" + tag),
		SelfSignature: []byte("self-signature-" + tag),
	}
}

func deviceIDs(ds []Device) []uuid.UUID {
	ids := make([]uuid.UUID, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

// testDevices: add, list, look up, remove; removal bumps the generation,
// keeps the row, never frees the id; the last device stays; another
// user's device cannot be removed.
func testDevices(t *testing.T, s Store) {
	ctx := context.Background()
	alice, bob := mustCreateUser(t, s, "alice"), mustCreateUser(t, s, "bob")
	if ds, err := s.DevicesOf(ctx, alice.ID); err != nil || len(ds) != 0 {
		t.Fatalf("DevicesOf before any: %v, %v; want none", ds, err)
	}
	d1, err := s.AddDevice(ctx, testDevice(alice.ID, "1"))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := s.AddDevice(ctx, testDevice(alice.ID, "2"))
	if err != nil {
		t.Fatal(err)
	}
	b1, err := s.AddDevice(ctx, testDevice(bob.ID, "b1"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := s.DevicesOf(ctx, alice.ID)
	if err != nil || fmt.Sprint(deviceIDs(ds)) != fmt.Sprint([]uuid.UUID{d1.ID, d2.ID}) {
		t.Fatalf("DevicesOf(alice) = %v, %v; want %v %v", deviceIDs(ds), err, d1.ID, d2.ID)
	}
	if got := ds[1]; got.Name != "dev 2" || string(got.SigningKey) != "signing-key-2" || string(got.EncryptionKey) != "encryption-key-2" ||
		string(got.SelfSignature) != "self-signature-2" || !got.CreatedAt.Equal(d2.CreatedAt) || !got.RemovedAt.IsZero() || got.UserID != alice.ID {
		t.Errorf("stored device %+v, want %+v", got, d2)
	}

	dup := testDevice(bob.ID, "dup")
	dup.ID = d1.ID
	_, err = s.AddDevice(ctx, dup)
	wantErr(t, "AddDevice with another user's id", err, ErrConflict)
	_, err = s.AddDevice(ctx, testDevice(uuid.New(), "nobody"))
	wantErr(t, "AddDevice for an unknown user", err, ErrNotFound)
	bad := testDevice(alice.ID, "bad")
	bad.ID = uuid.Nil
	_, err = s.AddDevice(ctx, bad)
	wantErr(t, "AddDevice with the nil id", err, ErrInvalid)
	bad = testDevice(alice.ID, "bad")
	bad.Name = "tab\there"
	_, err = s.AddDevice(ctx, bad)
	wantErr(t, "AddDevice with a control character in the name", err, ErrInvalid)

	_, err = s.RemoveDevice(ctx, alice.ID, b1.ID)
	wantErr(t, "RemoveDevice of bob's device as alice", err, ErrNotFound)
	_, err = s.RemoveDevice(ctx, bob.ID, b1.ID)
	wantErr(t, "RemoveDevice of bob's last device", err, ErrLastDevice)

	gen, err := s.RemoveDevice(ctx, alice.ID, d2.ID)
	if err != nil || gen != alice.Generation {
		t.Fatalf("RemoveDevice = %d, %v; want the unchanged generation %d", gen, err, alice.Generation)
	}
	if u, _ := s.UserByID(ctx, alice.ID); u.Generation != gen {
		t.Errorf("generation after RemoveDevice %d, want %d", u.Generation, gen)
	}
	if u, _ := s.UserByID(ctx, bob.ID); u.Generation != bob.Generation {
		t.Errorf("bob's generation moved to %d", u.Generation)
	}
	if ds, _ := s.DevicesOf(ctx, alice.ID); fmt.Sprint(deviceIDs(ds)) != fmt.Sprint([]uuid.UUID{d1.ID}) {
		t.Errorf("DevicesOf after removal = %v, want %v", deviceIDs(ds), d1.ID)
	}
	got, err := s.DeviceByID(ctx, d2.ID)
	if err != nil || got.RemovedAt.IsZero() || got.UserID != alice.ID {
		t.Errorf("DeviceByID(removed) = %+v, %v; want it kept, marked removed", got, err)
	}
	_, err = s.RemoveDevice(ctx, alice.ID, d2.ID)
	wantErr(t, "RemoveDevice twice", err, ErrNotFound)
	_, err = s.RemoveDevice(ctx, alice.ID, d1.ID)
	wantErr(t, "RemoveDevice of the last one", err, ErrLastDevice)
	again := testDevice(alice.ID, "again")
	again.ID = d2.ID
	_, err = s.AddDevice(ctx, again)
	wantErr(t, "AddDevice reusing a removed id", err, ErrConflict)
	_, err = s.DeviceByID(ctx, uuid.New())
	wantErr(t, "DeviceByID(unknown)", err, ErrNotFound)
}

// testDeviceLimit: concurrent adds never leave more than
// MaxDevicesPerUser current devices; the others get ErrLimit.
func testDeviceLimit(t *testing.T, s Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "many")
	const extra = 4
	var wg sync.WaitGroup
	errs := make(chan error, MaxDevicesPerUser+extra)
	for i := range MaxDevicesPerUser + extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.AddDevice(ctx, testDevice(u.ID, fmt.Sprint(i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	var limited int
	for err := range errs {
		switch {
		case errors.Is(err, ErrLimit):
			limited++
		case err != nil:
			t.Errorf("AddDevice: %v", err)
		}
	}
	if ds, _ := s.DevicesOf(ctx, u.ID); len(ds) != MaxDevicesPerUser || limited != extra {
		t.Errorf("%d devices stored, %d refused; want %d and %d", len(ds), limited, MaxDevicesPerUser, extra)
	}
}

// testCreateUserWithDevice: both or neither.
func testCreateUserWithDevice(t *testing.T, s Store) {
	ctx := context.Background()
	u, d, err := s.CreateUserWithDevice(ctx, User{Name: "Carol", PasswordHash: testHash}, testDevice(uuid.Nil, "c"))
	if err != nil || u.Name != "carol" || d.UserID != u.ID {
		t.Fatalf("CreateUserWithDevice = %+v, %+v, %v", u, d, err)
	}
	if ds, _ := s.DevicesOf(ctx, u.ID); len(ds) != 1 || ds[0].ID != d.ID {
		t.Errorf("DevicesOf = %v, want %v", deviceIDs(ds), d.ID)
	}
	dup := testDevice(uuid.Nil, "dup")
	dup.ID = d.ID
	_, _, err = s.CreateUserWithDevice(ctx, User{Name: "dave", PasswordHash: testHash}, dup)
	wantErr(t, "CreateUserWithDevice with a taken device id", err, ErrConflict)
	if _, err := s.UserByName(ctx, "dave"); !errors.Is(err, ErrNotFound) {
		t.Errorf("dave stored without his device: %v", err)
	}
	_, _, err = s.CreateUserWithDevice(ctx, User{Name: "carol", PasswordHash: testHash}, testDevice(uuid.Nil, "c2"))
	wantErr(t, "CreateUserWithDevice with a taken name", err, ErrConflict)
}
