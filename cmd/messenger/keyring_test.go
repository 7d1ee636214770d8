package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/store"
)

// TestMessageKeyring: the keyring that seals stored messages follows from
// storage.key alone, so messages stored before a restart read after it;
// another storage key gets another key and another key id; and the key is
// none of the other keys derived from storage.key.
func TestMessageKeyring(t *testing.T) {
	storageA := bytes.Repeat([]byte{0xa1}, 32)
	storageB := bytes.Repeat([]byte{0xb2}, 32)
	a1, err := messageKeyring(storageA)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := messageKeyring(storageA)
	b, _ := messageKeyring(storageB)
	idA, keyA := a1.Current()
	idA2, keyA2 := a2.Current()
	idB, keyB := b.Current()
	if idA == 0 || idA != idA2 || !bytes.Equal(keyA, keyA2) {
		t.Errorf("the same storage key gave key %d and %d", idA, idA2)
	}
	if idA == idB || bytes.Equal(keyA, keyB) {
		t.Errorf("two storage keys gave the same key id (%d) or key", idA)
	}
	for _, purpose := range []string{"session records", "broker payloads"} {
		if bytes.Equal(keyA, deriveKey(storageA, purpose)) {
			t.Errorf("the message key is the %s key", purpose)
		}
	}

	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "messenger.db")
	db, err := store.OpenSQLite(ctx, path, store.WithKeyring(a1))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := db.CreateUser(ctx, store.User{Name: "owner", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateRoom(ctx, store.Room{Name: "lobby", CreatedBy: owner.ID}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.AppendMessage(ctx, store.StoredMessage{Stream: store.RoomStream("lobby"), ID: uuid.New(),
		Sender: owner.ID, Kind: store.KindMessage, Body: []byte("before the restart")}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = store.OpenSQLite(ctx, path, store.WithKeyring(a2))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, _, err := db.History(ctx, store.RoomStream("lobby"), store.HistoryQuery{})
	if err != nil || len(ms) != 1 || string(ms[0].Body) != "before the restart" {
		t.Errorf("after the restart: %+v, %v", ms, err)
	}
}
