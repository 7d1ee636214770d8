package e2e

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

var allFour = []string{"alice-1", "alice-2", "bob-1", "bob-2"}

// TestKeyEnvelopeRoundTrip: for both suites, an envelope made by one
// device opens on every device of both users to the same key, with one
// signature check and one RSA decryption each, and re-encodes to its own
// bytes.
func TestKeyEnvelopeRoundTrip(t *testing.T) {
	for _, suite := range []Suite{SuiteGCM, SuiteCBC} {
		t.Run(suite.String(), func(t *testing.T) {
			data, key, err := NewKeyEnvelope(dev(t, "bob-2").local, EnvelopeParams{
				Conversation: testConversation, KeyVersion: 1, Suite: suite,
				Devices: publics(t, "bob-1", "alice-2", "bob-2", "alice-1"), // any order
			})
			wantErr(t, err, nil)
			if len(data) > MaxKeyEnvelopeSize {
				t.Fatalf("%d bytes, over MaxKeyEnvelopeSize", len(data))
			}
			e, err := ParseKeyEnvelope(data)
			wantErr(t, err, nil)
			if re, _ := e.Marshal(); !bytes.Equal(re, data) {
				t.Fatal("a parsed envelope re-encodes differently")
			}
			if e.Suite != suite || e.KeyVersion != 1 || e.Creator != dev(t, "bob-2").local.Ref() || len(e.Stanzas) != 4 {
				t.Fatalf("parsed %+v", e)
			}
			if e.Users() != [2]string{"alice", "bob"} {
				t.Fatalf("users %v", e.Users())
			}
			for _, name := range allFour {
				verifies, decrypts := countRSA(t)
				me := dev(t, name).local
				k, err := e.Open(testConversation, peerOf(me.User), dev(t, "bob-2").public, me)
				wantErr(t, err, nil)
				if k.secret != key.secret || k.Suite() != suite || k.Version() != 1 {
					t.Fatalf("%s opened another key", name)
				}
				if *verifies != 1 || *decrypts != 1 {
					t.Fatalf("%s: %d verifications and %d decryptions, want 1 and 1", name, *verifies, *decrypts)
				}
			}
			// Carol is no party: she cannot even ask for this conversation.
			carol := dev(t, "carol-1").local
			_, err = e.Open(testConversation, "bob", dev(t, "bob-2").public, carol)
			wantErr(t, err, ErrWrongConversation)
		})
	}
}

// TestKeyEnvelopeCanonicalBeforeRSA: non-canonical stanzas and too many of
// them are refused before any signature check or RSA decryption, whether
// the bytes are parsed or an envelope built in memory is opened, even when
// the creator signed them.
func TestKeyEnvelopeCanonicalBeforeRSA(t *testing.T) {
	w := newWorld(t)
	cases := map[string]bool{
		"env-stanzas-reordered": true, "env-stanza-duplicated": true, "env-65-stanzas": true,
		"env-no-stanza": true, "env-one-user": true, "env-three-users": true,
		"env-creator-without-stanza": true, "env-wrapped-255-bytes": true,
		"env-truncated": true, "env-trailing-byte": true, "env-format-2": true, "env-suite-3": true,
	}
	seen := 0
	for _, c := range failureCases(t, w) {
		if !cases[c.name] {
			continue
		}
		seen++
		t.Run(c.name, func(t *testing.T) {
			verifies, decrypts := countRSA(t)
			_, err := w.vectorSet().openEnvelope(t, c.opener, c.data)
			wantErr(t, err, c.want)
			if *verifies != 0 || *decrypts != 0 {
				t.Fatalf("%d verifications and %d decryptions before the structural check", *verifies, *decrypts)
			}
		})
	}
	if seen != len(cases) {
		t.Fatalf("ran %d of %d cases", seen, len(cases))
	}

	// The same rules hold for an envelope built in memory and opened
	// without ParseKeyEnvelope.
	for _, c := range []struct {
		name string
		mut  func(*KeyEnvelope)
		want error
	}{
		{"reordered", func(e *KeyEnvelope) { e.Stanzas[0], e.Stanzas[3] = e.Stanzas[3], e.Stanzas[0] }, ErrMalformed},
		{"duplicated", func(e *KeyEnvelope) { e.Stanzas = append(e.Stanzas, e.Stanzas[3]) }, ErrMalformed},
		{"65 stanzas", func(e *KeyEnvelope) {
			for i := range MaxRecipients + 1 - len(e.Stanzas) {
				e.Stanzas = append(e.Stanzas, Stanza{User: "bob", Device: uuid.UUID{0: 0xff, 15: byte(i)}, Wrapped: e.Stanzas[3].Wrapped})
			}
		}, ErrTooManyRecipients},
		{"300 stanzas", func(e *KeyEnvelope) {
			for i := range 300 {
				e.Stanzas = append(e.Stanzas, Stanza{User: "bob", Device: uuid.UUID{0: 0xff, 14: byte(i >> 8), 15: byte(i)}, Wrapped: e.Stanzas[3].Wrapped})
			}
		}, ErrTooManyRecipients},
		{"no stanza", func(e *KeyEnvelope) { e.Stanzas = nil }, ErrMalformed},
	} {
		t.Run("in memory/"+c.name, func(t *testing.T) {
			e := w.envelope(t, "env-v1-gcm")
			c.mut(e)
			if body, err := e.signedPart(); err == nil {
				e.Signature, _ = sign(dev(t, "alice-1").local.Signing, ContextKeyEnvelope, body)
			}
			verifies, decrypts := countRSA(t)
			_, err := e.Open(testConversation, "alice", dev(t, "alice-1").public, dev(t, "bob-1").local)
			wantErr(t, err, c.want)
			if *verifies != 0 || *decrypts != 0 {
				t.Fatalf("%d verifications and %d decryptions before the structural check", *verifies, *decrypts)
			}
		})
	}
}

// TestKeyEnvelopeEveryByte: changing any one byte of an envelope makes
// opening it fail, and never costs an RSA decryption: the signature is
// checked before the one unwrap.
func TestKeyEnvelopeEveryByte(t *testing.T) {
	w := newWorld(t)
	data := w.envelopes["env-v1-gcm"]
	v := w.vectorSet()
	verifies, decrypts := countRSA(t)
	for i := range data {
		mut := bytes.Clone(data)
		mut[i] ^= 0x80
		if _, err := v.openEnvelope(t, "bob-1", mut); err == nil {
			t.Fatalf("byte %d changed: envelope still opens", i)
		}
	}
	if *decrypts != 0 {
		t.Fatalf("%d RSA decryptions for %d altered envelopes, want 0", *decrypts, len(data))
	}
	if *verifies == 0 {
		t.Fatal("no signature was checked")
	}
}

// TestKeyEnvelopeTruncations: every proper prefix is ErrMalformed, with
// no RSA operation.
func TestKeyEnvelopeTruncations(t *testing.T) {
	data := newWorld(t).envelopes["env-v1-gcm"]
	verifies, decrypts := countRSA(t)
	for n := range len(data) {
		_, err := ParseKeyEnvelope(data[:n])
		wantErr(t, err, ErrMalformed)
	}
	if *verifies+*decrypts != 0 {
		t.Fatalf("%d RSA operations", *verifies+*decrypts)
	}
	_, err := ParseKeyEnvelope(make([]byte, MaxKeyEnvelopeSize+1))
	wantErr(t, err, ErrMalformed)
}

// TestKeyEnvelopeOpenChecks: the caller-supplied creator must be the named
// device with a valid key, and the local device must be usable.
func TestKeyEnvelopeOpenChecks(t *testing.T) {
	w := newWorld(t)
	e := w.envelope(t, "env-v1-gcm")
	bob := dev(t, "bob-1").local
	_, err := e.Open(testConversation, "alice", dev(t, "alice-2").public, bob)
	wantErr(t, err, ErrWrongDevice)
	bad := dev(t, "alice-1").public
	bad.Signing = []byte("garbage")
	_, err = e.Open(testConversation, "alice", bad, bob)
	wantErr(t, err, ErrBadKey)
	_, err = e.Open(testConversation, "alice", dev(t, "alice-1").public, nil)
	wantErr(t, err, ErrBadDevice)
	// Expecting the conversation with carol: wrong pair.
	_, err = e.Open(testConversation, "carol", dev(t, "alice-1").public, bob)
	wantErr(t, err, ErrWrongConversation)
	_, err = e.Open(otherConversation, "alice", dev(t, "alice-1").public, bob)
	wantErr(t, err, ErrWrongConversation)
}

// TestNewKeyEnvelopeChecks: what NewKeyEnvelope refuses to make.
func TestNewKeyEnvelopeChecks(t *testing.T) {
	alice := dev(t, "alice-1").local
	base := EnvelopeParams{Conversation: testConversation, KeyVersion: 1, Devices: publics(t, allFour...)}
	changedKey := publics(t, allFour...)
	changedKey[0].Signing = changedKey[1].Signing // alice-1 listed with alice-2's signing key
	for _, c := range []struct {
		name string
		mut  func(*EnvelopeParams)
		want error
	}{
		{"creator not listed", func(p *EnvelopeParams) { p.Devices = publics(t, "alice-2", "bob-1") }, ErrBadDevice},
		{"creator listed with other keys", func(p *EnvelopeParams) { p.Devices = changedKey }, ErrBadDevice},
		{"three users", func(p *EnvelopeParams) { p.Devices = publics(t, "alice-1", "bob-1", "carol-1") }, ErrBadDevice},
		{"one user", func(p *EnvelopeParams) { p.Devices = publics(t, "alice-1", "alice-2") }, ErrBadDevice},
		{"duplicate device", func(p *EnvelopeParams) { p.Devices = publics(t, "alice-1", "bob-1", "bob-1") }, ErrBadDevice},
		{"key version 0", func(p *EnvelopeParams) { p.KeyVersion = 0 }, ErrMalformed},
		{"unknown suite", func(p *EnvelopeParams) { p.Suite = 7 }, ErrUnsupportedSuite},
		{"65 devices", func(p *EnvelopeParams) {
			p.Devices = append(publics(t, "alice-1"), manyDevices(dev(t, "bob-1").public, MaxRecipients)...)
		}, ErrTooManyRecipients},
		{"before 1970", func(p *EnvelopeParams) { p.Created = time.UnixMilli(-5) }, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := base
			c.mut(&p)
			_, _, err := NewKeyEnvelope(alice, p)
			wantErr(t, err, c.want)
		})
	}
	// 64 devices is the limit, and works.
	p := base
	p.Devices = append(publics(t, "alice-1"), manyDevices(dev(t, "bob-1").public, MaxRecipients-1)...)
	data, _, err := NewKeyEnvelope(alice, p)
	wantErr(t, err, nil)
	e, err := ParseKeyEnvelope(data)
	wantErr(t, err, nil)
	if len(e.Stanzas) != MaxRecipients {
		t.Fatalf("%d stanzas", len(e.Stanzas))
	}
}

// TestKeyring: keys of one conversation and pair, one key per version.
func TestKeyring(t *testing.T) {
	w := newWorld(t)
	ring := NewKeyring(testConversation)
	if ring.Latest() != nil {
		t.Fatal("empty keyring has a latest key")
	}
	k1, k2 := w.keys["env-v1-gcm"], w.keys["env-v2-cbc"]
	wantErr(t, ring.Add(k2), nil)
	wantErr(t, ring.Add(k1), nil)
	wantErr(t, ring.Add(k1), nil) // same key again: no-op
	if ring.Latest() != k2 {
		t.Fatal("latest is not key version 2")
	}
	// Another key for version 1.
	_, other, err := NewKeyEnvelope(dev(t, "alice-1").local, EnvelopeParams{Conversation: testConversation, KeyVersion: 1, Devices: publics(t, allFour...)})
	wantErr(t, err, nil)
	wantErr(t, ring.Add(other), ErrKeyConflict)
	// Another conversation.
	_, foreign, err := NewKeyEnvelope(dev(t, "alice-1").local, EnvelopeParams{Conversation: otherConversation, KeyVersion: 3, Devices: publics(t, allFour...)})
	wantErr(t, err, nil)
	wantErr(t, ring.Add(foreign), ErrWrongConversation)
	// Same id, another pair.
	_, pair, err := NewKeyEnvelope(dev(t, "alice-1").local, EnvelopeParams{Conversation: testConversation, KeyVersion: 3, Devices: publics(t, "alice-1", "carol-1")})
	wantErr(t, err, nil)
	wantErr(t, ring.Add(pair), ErrWrongConversation)
	if v, err := k2.NextVersion(); err != nil || v != 3 {
		t.Fatalf("next version %d, %v", v, err)
	}
	if got := k2.Recipients(); !slices.Equal(got, []DeviceRef{dev(t, "alice-1").local.Ref(), dev(t, "bob-1").local.Ref(), dev(t, "bob-2").local.Ref()}) {
		t.Fatalf("recipients %v", got)
	}
	if k1.Created().UnixMilli() != createdV1.UnixMilli() || k1.Creator() != dev(t, "alice-1").local.Ref() {
		t.Fatal("creation time or creator lost")
	}
}
