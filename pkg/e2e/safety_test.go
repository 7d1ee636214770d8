package e2e

import (
	"crypto/sha512"
	"fmt"
	"regexp"
	"testing"
)

// TestSafetyNumber: the same for both sides, 12 groups of 5 digits, as
// documented; a changed device set changes it.
func TestSafetyNumber(t *testing.T) {
	fa, err := UserFingerprint("alice", publics(t, "alice-1", "alice-2"))
	wantErr(t, err, nil)
	fb, err := UserFingerprint("bob", publics(t, "bob-1", "bob-2"))
	wantErr(t, err, nil)
	n := NewSafetyNumber(fa, fb)
	if NewSafetyNumber(fb, fa) != n {
		t.Fatal("the safety number depends on the order of the users")
	}
	if !regexp.MustCompile(`^\d{5}( \d{5}){11}$`).MatchString(n.String()) {
		t.Fatalf("%q is not 12 groups of 5 digits", n)
	}
	lines := n.Lines()
	if lines[0]+" "+lines[1]+" "+lines[2] != n.String() {
		t.Fatalf("lines %q", lines)
	}
	// Recompute from docs/e2e.md.
	lo, hi := fa, fb
	if fmt.Sprintf("%x", lo) > fmt.Sprintf("%x", hi) {
		lo, hi = hi, lo
	}
	h := sha512.Sum512(append(append([]byte("messenger v1 safety number\x00"), lo[:]...), hi[:]...))
	var want string
	for i := range 12 {
		var v uint64
		for _, c := range h[5*i : 5*i+5] {
			v = v<<8 | uint64(c)
		}
		if i > 0 {
			want += " "
		}
		want += fmt.Sprintf("%05d", v%100000)
	}
	if n.String() != want {
		t.Fatalf("%s, docs say %s", n, want)
	}
	fb2, _ := UserFingerprint("bob", publics(t, "bob-1"))
	if NewSafetyNumber(fa, fb2) == n {
		t.Fatal("a removed device keeps the safety number")
	}
	var zero SafetyNumber
	if zero.String() != "00000 00000 00000 00000 00000 00000 00000 00000 00000 00000 00000 00000" {
		t.Fatalf("leading zeros lost: %s", zero)
	}
}
