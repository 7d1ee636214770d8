package e2e

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/uuid"
)

// TestReplayGuardPersists: a guard saved with json.Marshal and restored
// still refuses what it accepted, and the encoding is stable.
func TestReplayGuardPersists(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	bob := &party{d: dev(t, "bob-1"), ring: v.keyring(t, "bob-1"), guard: &ReplayGuard{}}
	for _, name := range []string{"rec-1", "rec-2", "rec-3"} {
		_, err := bob.open(t, w.records[name])
		wantErr(t, err, nil)
	}
	saved, err := json.Marshal(bob.guard)
	wantErr(t, err, nil)
	restored := &ReplayGuard{}
	wantErr(t, json.Unmarshal(saved, restored), nil)
	again, _ := json.Marshal(restored)
	if string(again) != string(saved) {
		t.Fatalf("re-encoding differs:\n%s\n%s", saved, again)
	}
	bob.guard = restored
	_, err = bob.open(t, w.records["rec-2"])
	wantErr(t, err, ErrReplay)
	if got := restored.LastCounter(testConversation, dev(t, "alice-1").local.Ref(), 1); got != 2 {
		t.Fatalf("last counter %d, want 2", got)
	}
}

// TestReplayGuardRejectsBadState: invalid persisted state is ErrMalformed
// and leaves the guard as it was.
func TestReplayGuardRejectsBadState(t *testing.T) {
	g := &ReplayGuard{}
	h := Header{Conversation: testConversation, KeyVersion: 1, Sender: "alice", SenderDevice: uuid.New(), Recipient: "bob", MessageID: uuid.New(), Counter: 4}
	wantErr(t, g.accept(&h), nil)
	before, _ := json.Marshal(g)
	c, id := testConversation.String(), uuid.New().String()
	for name, in := range map[string]string{
		"not json":         `{`,
		"bad user":         `{"counters":[{"conversation":"` + c + `","user":"A B","device":"` + id + `","key_version":1,"counter":1}],"ids":[]}`,
		"counter 0":        `{"counters":[{"conversation":"` + c + `","user":"a","device":"` + id + `","key_version":1,"counter":0}],"ids":[]}`,
		"key version 0":    `{"counters":[{"conversation":"` + c + `","user":"a","device":"` + id + `","key_version":0,"counter":1}],"ids":[]}`,
		"duplicate id":     `{"counters":[],"ids":[{"conversation":"` + c + `","message_id":"` + id + `"},{"conversation":"` + c + `","message_id":"` + id + `"}]}`,
		"bad uuid":         `{"counters":[],"ids":[{"conversation":"x","message_id":"` + id + `"}]}`,
		"duplicate stream": `{"counters":[{"conversation":"` + c + `","user":"a","device":"` + id + `","key_version":1,"counter":1},{"conversation":"` + c + `","user":"a","device":"` + id + `","key_version":1,"counter":2}],"ids":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, g.UnmarshalJSON([]byte(in)), ErrMalformed)
			after, _ := json.Marshal(g)
			if string(after) != string(before) {
				t.Fatal("a refused state changed the guard")
			}
		})
	}
}

// TestReplayGuardForgetsOldIDs: past MaxRememberedIDs the oldest id is
// forgotten, but its counter still refuses the old record.
func TestReplayGuardForgetsOldIDs(t *testing.T) {
	g := &ReplayGuard{}
	sender := uuid.New()
	first := Header{Conversation: testConversation, KeyVersion: 1, Sender: "alice", SenderDevice: sender, Recipient: "bob", MessageID: uuid.New(), Counter: 1}
	wantErr(t, g.accept(&first), nil)
	for i := range MaxRememberedIDs {
		h := first
		h.MessageID, h.Counter = uuid.New(), uint64(i+2)
		wantErr(t, g.accept(&h), nil)
	}
	if len(g.order) != MaxRememberedIDs || len(g.ids) != MaxRememberedIDs {
		t.Fatalf("remembers %d/%d ids", len(g.order), len(g.ids))
	}
	wantErr(t, g.accept(&first), ErrStaleCounter)
	// Another sender device, another key version: counters are separate.
	other := first
	other.SenderDevice = uuid.New()
	wantErr(t, g.accept(&other), nil)
	v2 := first
	v2.KeyVersion, v2.MessageID = 2, uuid.New()
	wantErr(t, g.accept(&v2), nil)
}

// TestReplayGuardOnlyAcceptedRecords: a record that fails a check after
// the signature (here ErrBadAD, with a high counter) does not move the
// guard, so the genuine records still open.
func TestReplayGuardOnlyAcceptedRecords(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	bob := &party{d: dev(t, "bob-1"), ring: v.keyring(t, "bob-1"), guard: &ReplayGuard{}}
	forged := w.recWith(t, "rec-2", func(r *Record) { r.Counter = 99 }, "alice-1")
	_, err := bob.open(t, forged)
	wantErr(t, err, ErrBadAD)
	for _, name := range []string{"rec-1", "rec-2"} {
		_, err := bob.open(t, w.records[name])
		wantErr(t, err, nil)
	}
}

// TestReplayGuardConcurrent: the same record opened from many goroutines
// is accepted exactly once.
func TestReplayGuardConcurrent(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	ring := v.keyring(t, "bob-1")
	guard := &ReplayGuard{}
	r := w.record(t, "rec-1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 8 {
		wg.Go(func() {
			if _, err := Open(ring, r, dev(t, "alice-1").public, guard); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("accepted %d times", accepted)
	}
}
