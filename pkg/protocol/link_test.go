package protocol

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

// TestLinkCode: a code prints as 29 base32 characters in groups of four,
// parses back from any case with or without dashes, and refuses what is
// not a code.
func TestLinkCode(t *testing.T) {
	id := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	c, err := NewLinkCode(id)
	if err != nil {
		t.Fatal(err)
	}
	s := c.String()
	if len(strings.ReplaceAll(s, "-", "")) != 29 || strings.Count(s, "-") != 7 || !bytes.Equal(c.ID[:], id) {
		t.Fatalf("code %q for id %x", s, c.ID)
	}
	for _, in := range []string{s, strings.ToLower(s), strings.ReplaceAll(s, "-", ""), " " + strings.ReplaceAll(s, "-", " ") + " "} {
		got, err := ParseLinkCode(in)
		if err != nil || got != c {
			t.Errorf("ParseLinkCode(%q) = %v, %v; want the code", in, got, err)
		}
	}
	for _, bad := range []string{"", "ABCD", s + "A", s[:len(s)-2], strings.Replace(s, s[:1], "1", 1), "not-a-code"} {
		if _, err := ParseLinkCode(bad); !errors.Is(err, CodeMalformed) {
			t.Errorf("ParseLinkCode(%q): %v, want malformed", bad, err)
		}
	}
	if _, err := NewLinkCode(id[:7]); !errors.Is(err, CodeMalformed) {
		t.Errorf("NewLinkCode of 7 bytes: %v", err)
	}
}

// TestLinkMACAndApproval: the MAC verifies only for the code's secret and
// the fingerprint it was made over; the approval only for its user, link
// id, fingerprint and key.
func TestLinkMACAndApproval(t *testing.T) {
	c, _ := NewLinkCode(make([]byte, LinkIDSize))
	var fp, other Fingerprint
	fp[0], other[0] = 1, 2
	mac := LinkMAC(c, fp)
	if err := VerifyLinkMAC(c, fp, mac); err != nil {
		t.Fatal(err)
	}
	wrong := c
	wrong.Secret[9] ^= 1
	for name, err := range map[string]error{
		"other secret":      VerifyLinkMAC(wrong, fp, mac),
		"other fingerprint": VerifyLinkMAC(c, other, mac),
		"short mac":         VerifyLinkMAC(c, fp, mac[:31]),
	} {
		if !errors.Is(err, CodeBadSignature) {
			t.Errorf("%s: %v, want bad_signature", name, err)
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := SignDeviceApproval(key, "alice", c.ID[:], fp)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDeviceApproval(&key.PublicKey, "alice", c.ID[:], fp, sig); err != nil {
		t.Fatal(err)
	}
	otherID := []byte{9, 9, 9, 9, 9, 9, 9, 9}
	for name, err := range map[string]error{
		"other user":        VerifyDeviceApproval(&key.PublicKey, "bob", c.ID[:], fp, sig),
		"other link":        VerifyDeviceApproval(&key.PublicKey, "alice", otherID, fp, sig),
		"other fingerprint": VerifyDeviceApproval(&key.PublicKey, "alice", c.ID[:], other, sig),
	} {
		if !errors.Is(err, CodeBadSignature) {
			t.Errorf("%s: %v, want bad_signature", name, err)
		}
	}
}

// FuzzParseLinkCode: any input either fails as malformed or parses to a
// code that prints and parses back to itself.
func FuzzParseLinkCode(f *testing.F) {
	c, _ := NewLinkCode([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(c.String())
	f.Add(strings.ToLower(c.String()))
	f.Add("")
	f.Add("AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-A")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLinkCode(s)
		if err != nil {
			if !errors.Is(err, CodeMalformed) {
				t.Fatalf("ParseLinkCode(%q): %v, not malformed", s, err)
			}
			return
		}
		again, err := ParseLinkCode(got.String())
		if err != nil || again != got {
			t.Fatalf("code %q of %q does not parse back: %v, %v", got.String(), s, again, err)
		}
	})
}
