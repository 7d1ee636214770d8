package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/secure-messenger/messenger/pkg/client"
)

// TestConversationCountersKept: with a StateDir, a new session of the same
// device goes on under the latest key (no rotation) with the next counter,
// and bob opens every record; without one, each new session rotates. (A
// key the other party made is used as is once the counter file exists:
// conv_peek_test.go.)
func TestConversationCountersKept(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	dir := t.TempDir()
	opts := client.ConversationOptions{StateDir: dir}
	cvb := openConv(t, u.cb1, u.bob1, "alice") // bob first: his open makes a key
	cv1, err := u.ca.OpenConversation(ctxT(t), u.alice, "bob", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cv1.SendText(ctxT(t), "one"); err != nil {
		t.Fatal(err)
	}
	v := cv1.KeyVersion()
	files, _ := filepath.Glob(filepath.Join(dir, "conv-*.json"))
	if len(files) != 1 {
		t.Fatalf("state files %v, want one", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode: %v, %v", fi, err)
	}

	// A new connection and session of the same device.
	c2 := ts.dial(t)
	if _, err := c2.Auth(ctxT(t), u.alice); err != nil {
		t.Fatal(err)
	}
	cv2, err := c2.OpenConversation(ctxT(t), u.alice, "bob", opts)
	if err != nil {
		t.Fatal(err)
	}
	if cv2.KeyVersion() != v {
		t.Fatalf("key version %d after a new session with kept counters, want %d (no rotation)", cv2.KeyVersion(), v)
	}
	if _, _, err := cv2.SendText(ctxT(t), "two"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two"} {
		if got := receive(t, u.cb1, cvb); got.Text != want || got.From != "alice" {
			t.Fatalf("bob got %q from %s, want %q", got.Text, got.From, want)
		}
	}

	// Without kept counters, a new session rotates.
	c3 := ts.dial(t)
	if _, err := c3.Auth(ctxT(t), u.alice); err != nil {
		t.Fatal(err)
	}
	cv3 := openConv(t, c3, u.alice, "bob")
	if cv3.KeyVersion() != v+1 {
		t.Fatalf("key version %d after a new session without counters, want %d", cv3.KeyVersion(), v+1)
	}
}
