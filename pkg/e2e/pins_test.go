package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// TestPins: first use pins (New), the same devices are Trusted, any change
// is Changed with what was added and removed, and stays Changed until
// Accept; Save and LoadPins keep it, in a 0600 file.
func TestPins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "pins")
	p, err := LoadPins(path) // missing: empty
	wantErr(t, err, nil)
	bob := publics(t, "bob-1", "bob-2")
	c, err := p.Check("bob", bob)
	wantErr(t, err, nil)
	if c.Result != PinNew {
		t.Fatalf("first use: %v", c.Result)
	}
	c, _ = p.Check("bob", publics(t, "bob-2", "bob-1"))
	if c.Result != PinTrusted {
		t.Fatalf("same devices: %v", c.Result)
	}
	wantErr(t, p.Save(path), nil)
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		wantErr(t, err, nil)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode().Perm())
		}
	}

	p, err = LoadPins(path)
	wantErr(t, err, nil)
	// bob-2 replaced by a device with other keys, and a device added.
	changed := publics(t, "bob-1", "bob-2")
	changed[1].Encryption = dev(t, "bob-1").public.Encryption
	added := manyDevices(dev(t, "bob-1").public, 1)[0]
	changed = append(changed, added)
	c, err = p.Check("bob", changed)
	wantErr(t, err, nil)
	if c.Result != PinChanged {
		t.Fatalf("changed devices: %v", c.Result)
	}
	wantAdded := []Fingerprint{changed[1].Fingerprint(), added.Fingerprint()}
	sortFingerprints(wantAdded)
	if !slices.Equal(c.Added, wantAdded) || !slices.Equal(c.Removed, []Fingerprint{bob[1].Fingerprint()}) {
		t.Fatalf("added %v removed %v", c.Added, c.Removed)
	}
	// Still changed until accepted.
	if c, _ = p.Check("bob", changed); c.Result != PinChanged {
		t.Fatalf("second look: %v", c.Result)
	}
	wantErr(t, p.Accept("bob", changed), nil)
	if c, _ = p.Check("bob", changed); c.Result != PinTrusted {
		t.Fatalf("after accept: %v", c.Result)
	}
	// Other users are independent.
	if c, _ = p.Check("alice", publics(t, "alice-1")); c.Result != PinNew {
		t.Fatalf("alice: %v", c.Result)
	}
	wantErr(t, p.Save(path), nil)
	q, err := LoadPins(path)
	wantErr(t, err, nil)
	for _, u := range []string{"alice", "bob"} {
		a, _ := p.Pinned(u)
		b, ok := q.Pinned(u)
		if !ok || !slices.Equal(a, b) {
			t.Fatalf("%s: saved %v, loaded %v", u, a, b)
		}
	}
	if _, ok := q.Pinned("carol"); ok {
		t.Fatal("carol pinned")
	}
	_, err = q.Check("bob", publics(t, "alice-1"))
	wantErr(t, err, ErrBadDevice)
}

// TestLoadPinsMalformed: a bad line is ErrMalformed.
func TestLoadPinsMalformed(t *testing.T) {
	fp := dev(t, "bob-1").public.Fingerprint().String()
	for name, content := range map[string]string{
		"one field":       "bob\n",
		"three fields":    "bob " + fp + " x\n",
		"bad user":        "Bob " + fp + "\n",
		"bad fingerprint": "bob 1234\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pins")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPins(path)
			wantErr(t, err, ErrMalformed)
		})
	}
	p, err := parsePins([]byte("# comment\n\n  bob " + fp + "  \n"))
	wantErr(t, err, nil)
	if got, _ := p.Pinned("bob"); len(got) != 1 {
		t.Fatalf("pinned %v", got)
	}
}
