package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// party is one device in a conversation test: its keyring and its guard.
type party struct {
	d     *testDevice
	ring  *Keyring
	guard *ReplayGuard
	next  uint64 // next counter to seal with
}

// openAll opens every envelope in order for each device that can.
func newParties(t *testing.T, names []string, envelopes ...[]byte) map[string]*party {
	t.Helper()
	v := &vectorSet{envelopes: envelopes}
	out := map[string]*party{}
	for _, n := range names {
		out[n] = &party{d: dev(t, n), ring: v.keyring(t, n), guard: &ReplayGuard{}, next: 1}
	}
	return out
}

func (p *party) seal(t *testing.T, text string) []byte {
	t.Helper()
	key := p.ring.Latest()
	data, err := Seal(key, p.d.local, Outgoing{Recipient: key.Peer(p.d.local.User), MessageID: uuid.New(), Counter: p.next, Text: text})
	if err != nil {
		t.Fatalf("%s seals: %v", p.d.name, err)
	}
	p.next++
	return data
}

func (p *party) open(t testing.TB, data []byte) (*Message, error) {
	t.Helper()
	r, err := ParseRecord(data)
	if err != nil {
		return nil, err
	}
	sender, ok := deviceByRef(t, r.Sending())
	if !ok {
		t.Fatalf("unknown sender %v", r.Sending())
	}
	return Open(p.ring, r, sender.public, p.guard)
}

// TestConversationBothWays: with both suites, every device of alice and of
// bob sends, and every device of both (the sender included) opens each
// record, in order, exactly as sent.
func TestConversationBothWays(t *testing.T) {
	for _, suite := range []Suite{SuiteGCM, SuiteCBC} {
		t.Run(suite.String(), func(t *testing.T) {
			env, _, err := NewKeyEnvelope(dev(t, "alice-1").local, EnvelopeParams{
				Conversation: testConversation, KeyVersion: 1, Suite: suite, Devices: publics(t, allFour...),
			})
			wantErr(t, err, nil)
			ps := newParties(t, allFour, env)
			for round := range 3 {
				for _, sender := range allFour {
					text := fmt.Sprintf("message %d from %s: ünïcode ✓", round, sender)
					data := ps[sender].seal(t, text)
					for _, reader := range allFour {
						m, err := ps[reader].open(t, data)
						if err != nil {
							t.Fatalf("%s cannot open %s's message: %v", reader, sender, err)
						}
						want := dev(t, sender).local
						if m.Text != text || m.Sending() != want.Ref() || m.Recipient != peerOf(want.User) ||
							m.Counter != uint64(round+1) || m.KeyVersion != 1 || m.Suite != suite || m.Conversation != testConversation {
							t.Fatalf("%s opened %+v", reader, m)
						}
						if d := time.Since(m.Time()); d < 0 || d > time.Minute {
							t.Fatalf("timestamp %v", m.Time())
						}
					}
				}
			}
		})
	}
}

// TestRemovedDevice: key version 2 leaves out alice-2. alice-2 cannot open
// its envelope nor any record of version 2, and cannot seal under it, but
// still reads version 1.
func TestRemovedDevice(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	_, err := v.openEnvelope(t, "alice-2", w.envelopes["env-v2-cbc"])
	wantErr(t, err, ErrNotARecipient)
	for _, name := range []string{"rec-4", "rec-5"} {
		_, err := v.openRecord(t, "alice-2", nil, w.records[name])
		wantErr(t, err, ErrUnknownKeyVersion)
		for _, reader := range []string{"alice-1", "bob-1", "bob-2"} {
			_, err := v.openRecord(t, reader, nil, w.records[name])
			wantErr(t, err, nil)
		}
	}
	for _, name := range []string{"rec-1", "rec-3"} {
		_, err := v.openRecord(t, "alice-2", nil, w.records[name])
		wantErr(t, err, nil)
	}
	_, err = Seal(w.keys["env-v2-cbc"], dev(t, "alice-2").local, Outgoing{Recipient: "bob", MessageID: uuid.New(), Counter: 1, Text: "hi"})
	wantErr(t, err, ErrUnknownDevice)
}

// TestRecordEveryByte: changing any one byte of a record (GCM or CBC)
// makes it fail to open.
func TestRecordEveryByte(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	for _, name := range []string{"rec-1", "rec-4"} {
		t.Run(name, func(t *testing.T) {
			data := w.records[name]
			for i := range data {
				mut := bytes.Clone(data)
				mut[i] ^= 0x04
				if _, err := v.openRecord(t, "bob-2", nil, mut); err == nil {
					t.Fatalf("byte %d changed: record still opens", i)
				}
			}
		})
	}
}

// TestRecordTruncations: every proper prefix of a record is ErrMalformed,
// with no RSA operation.
func TestRecordTruncations(t *testing.T) {
	data := newWorld(t).records["rec-4"]
	verifies, decrypts := countRSA(t)
	for n := range len(data) {
		_, err := ParseRecord(data[:n])
		wantErr(t, err, ErrMalformed)
	}
	if *verifies+*decrypts != 0 {
		t.Fatalf("%d RSA operations", *verifies+*decrypts)
	}
	_, err := ParseRecord(make([]byte, MaxRecordSize+1))
	wantErr(t, err, ErrMalformed)
}

// TestSealChecks: what Seal refuses, and the largest text it takes.
func TestSealChecks(t *testing.T) {
	w := newWorld(t)
	key := w.keys["env-v1-gcm"]
	alice := dev(t, "alice-1").local
	ok := Outgoing{Recipient: "bob", MessageID: uuid.New(), Counter: 1, Text: "hi"}
	for _, c := range []struct {
		name string
		mut  func(*Outgoing)
		want error
	}{
		{"empty text", func(o *Outgoing) { o.Text = "" }, ErrBadPlaintext},
		{"text over 16 KiB", func(o *Outgoing) { o.Text = strings.Repeat("a", MaxPlaintext+1) }, ErrBadPlaintext},
		{"text not UTF-8", func(o *Outgoing) { o.Text = "a\xffb" }, ErrBadPlaintext},
		{"recipient is the sender", func(o *Outgoing) { o.Recipient = "alice" }, ErrNotARecipient},
		{"recipient outside", func(o *Outgoing) { o.Recipient = "carol" }, ErrNotARecipient},
		{"counter 0", func(o *Outgoing) { o.Counter = 0 }, ErrMalformed},
		{"before 1970", func(o *Outgoing) { o.Time = time.UnixMilli(-1) }, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			c.mut(&o)
			_, err := Seal(key, alice, o)
			wantErr(t, err, c.want)
		})
	}
	_, err := Seal(key, dev(t, "carol-1").local, ok)
	wantErr(t, err, ErrUnknownDevice)
	_, err = Seal(key, nil, ok)
	wantErr(t, err, ErrBadDevice)

	// The largest text, in both suites, fits MaxRecordSize and opens.
	for _, env := range []string{"env-v1-gcm", "env-v2-cbc"} {
		o := ok
		o.Text = strings.Repeat("é", MaxPlaintext/2)
		data, err := Seal(w.keys[env], alice, o)
		wantErr(t, err, nil)
		if len(data) > MaxRecordSize {
			t.Fatalf("%s: %d bytes, over MaxRecordSize", env, len(data))
		}
		m, err := w.vectorSet().openRecord(t, "bob-2", nil, data)
		wantErr(t, err, nil)
		if m.Text != o.Text {
			t.Fatal("largest text changed")
		}
	}
}

// TestOpenChecks: the caller-supplied sender must be the named device,
// with a valid key.
func TestOpenChecks(t *testing.T) {
	w := newWorld(t)
	ring := w.vectorSet().keyring(t, "bob-1")
	r := w.record(t, "rec-1")
	_, err := Open(ring, r, dev(t, "alice-2").public, nil)
	wantErr(t, err, ErrWrongDevice)
	bad := dev(t, "alice-1").public
	bad.Signing = bad.Signing[:100]
	_, err = Open(ring, r, bad, nil)
	wantErr(t, err, ErrBadKey)
	_, err = Open(nil, r, dev(t, "alice-1").public, nil)
	wantErr(t, err, ErrMalformed)
	// An empty keyring knows no key version.
	_, err = Open(NewKeyring(testConversation), r, dev(t, "alice-1").public, nil)
	wantErr(t, err, ErrUnknownKeyVersion)
	// Without a guard a record opens again and again (history re-reads).
	for range 2 {
		_, err = Open(ring, r, dev(t, "alice-1").public, nil)
		wantErr(t, err, nil)
	}
}
