package e2e

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/crypto/cryptobyte"
)

// TestKeysPresent loads every test key (creating missing ones under
// -update) and checks its size: the fixture is what the vectors say.
func TestKeysPresent(t *testing.T) {
	for _, s := range deviceSpecs {
		d := dev(t, s.name)
		if got := d.local.Signing.N.BitLen(); got != s.bits {
			t.Errorf("%s signing key: %d bits, want %d", s.name, got, s.bits)
		}
		if got := d.local.Encryption.N.BitLen(); got != s.bits {
			t.Errorf("%s encryption key: %d bits, want %d", s.name, got, s.bits)
		}
	}
}

// TestDeviceFingerprintEncoding recomputes a device fingerprint from the
// documented encoding, and shows that each part of the device changes it.
func TestDeviceFingerprintEncoding(t *testing.T) {
	d := dev(t, "alice-1").public
	var want []byte
	want = append(want, "messenger v1 device\x00"...)
	want = append(want, byte(len(d.User)))
	want = append(want, d.User...)
	want = append(want, d.ID[:]...)
	want = append(want, byte(len(d.Signing)>>8), byte(len(d.Signing)))
	want = append(want, d.Signing...)
	want = append(want, byte(len(d.Encryption)>>8), byte(len(d.Encryption)))
	want = append(want, d.Encryption...)
	if got := d.Fingerprint(); got != sha256.Sum256(want) {
		t.Fatalf("fingerprint %s does not follow docs/e2e.md", got)
	}
	other := dev(t, "alice-2").public
	for name, mut := range map[string]Device{
		"user":         {User: "alicf", ID: d.ID, Signing: d.Signing, Encryption: d.Encryption},
		"id":           {User: d.User, ID: other.ID, Signing: d.Signing, Encryption: d.Encryption},
		"signing":      {User: d.User, ID: d.ID, Signing: other.Signing, Encryption: d.Encryption},
		"encryption":   {User: d.User, ID: d.ID, Signing: d.Signing, Encryption: other.Encryption},
		"keys swapped": {User: d.User, ID: d.ID, Signing: d.Encryption, Encryption: d.Signing},
	} {
		if mut.Fingerprint() == d.Fingerprint() {
			t.Errorf("changing the %s keeps the fingerprint", name)
		}
	}
}

// TestUserFingerprint: order-independent, over exactly the user's
// devices, following the documented encoding; bad lists are ErrBadDevice
// or ErrBadKey.
func TestUserFingerprint(t *testing.T) {
	a1, a2 := dev(t, "alice-1").public, dev(t, "alice-2").public
	fp, err := UserFingerprint("alice", []Device{a1, a2})
	wantErr(t, err, nil)
	fp2, err := UserFingerprint("alice", []Device{a2, a1})
	wantErr(t, err, nil)
	if fp != fp2 {
		t.Fatal("user fingerprint depends on the order of devices")
	}
	f1, f2 := a1.Fingerprint(), a2.Fingerprint()
	if bytes.Compare(f1[:], f2[:]) > 0 {
		f1, f2 = f2, f1
	}
	var b cryptobyte.Builder
	b.AddBytes([]byte("messenger v1 user\x00"))
	b.AddUint8(5)
	b.AddBytes([]byte("alice"))
	b.AddUint8(2)
	b.AddBytes(f1[:])
	b.AddBytes(f2[:])
	if fp != sha256.Sum256(b.BytesOrPanic()) {
		t.Fatal("user fingerprint does not follow docs/e2e.md")
	}
	one, _ := UserFingerprint("alice", []Device{a1})
	if one == fp {
		t.Fatal("removing a device keeps the user fingerprint")
	}
	badKey := a2
	badKey.Encryption = []byte("not a key")
	for _, c := range []struct {
		name    string
		user    string
		devices []Device
		want    error
	}{
		{"no devices", "alice", nil, ErrBadDevice},
		{"another user's device", "alice", []Device{a1, dev(t, "bob-1").public}, ErrBadDevice},
		{"duplicate", "alice", []Device{a1, a1}, ErrBadDevice},
		{"invalid user", "Alice", []Device{a1}, ErrBadDevice},
		{"bad key", "alice", []Device{a1, badKey}, ErrBadKey},
		{"too many", "alice", manyDevices(a1, MaxRecipients+1), ErrBadDevice},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := UserFingerprint(c.user, c.devices)
			wantErr(t, err, c.want)
		})
	}
}

// manyDevices returns n copies of d with distinct ids.
func manyDevices(d Device, n int) []Device {
	out := make([]Device, n)
	for i := range out {
		out[i] = d
		out[i].ID = uuid.UUID{15: byte(i), 14: byte(i >> 8), 0: 0xee}
	}
	return out
}

// TestDeviceSetDigest: the same for any order, changed by any device
// change, and only for two users.
func TestDeviceSetDigest(t *testing.T) {
	all := publics(t, "alice-1", "alice-2", "bob-1", "bob-2")
	d, err := DeviceSetDigest(all)
	wantErr(t, err, nil)
	d2, _ := DeviceSetDigest(publics(t, "bob-2", "alice-2", "bob-1", "alice-1"))
	if d != d2 {
		t.Fatal("device set digest depends on order")
	}
	fa, _ := UserFingerprint("alice", all[:2])
	fb, _ := UserFingerprint("bob", all[2:])
	lo, hi := fa, fb
	if bytes.Compare(lo[:], hi[:]) > 0 {
		lo, hi = hi, lo
	}
	if d != sha256.Sum256(append(append([]byte("messenger v1 device set\x00"), lo[:]...), hi[:]...)) {
		t.Fatal("device set digest does not follow docs/e2e.md")
	}
	if d3, _ := DeviceSetDigest(all[:3]); d3 == d {
		t.Fatal("removing a device keeps the digest")
	}
	_, err = DeviceSetDigest(publics(t, "alice-1", "bob-1", "carol-1"))
	wantErr(t, err, ErrBadDevice)
	_, err = DeviceSetDigest(publics(t, "alice-1", "alice-2"))
	wantErr(t, err, ErrBadDevice)
}

// TestLocalDevicePublic: a local device's public half checks, and one
// with a key outside the RSA rule is ErrBadKey.
func TestLocalDevicePublic(t *testing.T) {
	l := dev(t, "alice-1").local
	if _, err := l.Public(); err != nil {
		t.Fatal(err)
	}
	_, err := (&LocalDevice{User: "alice", ID: l.ID, Signing: l.Signing}).Public()
	wantErr(t, err, ErrBadKey)
	bad := *l
	bad.User = "Not Valid"
	_, err = bad.Public()
	wantErr(t, err, ErrBadDevice)
	d := dev(t, "alice-1").public
	d.Signing = d.Signing[:len(d.Signing)-1]
	wantErr(t, d.Check(), ErrBadKey)
}
