package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets for every decoder of bytes another party controls (key
// envelopes and records, which the server relays) and of the local files
// (pins, the persisted replay guard). Beyond "never panics", each checks
// that a decoder fails only with its documented errors and that whatever
// decodes re-encodes to the identical bytes (the encodings are
// canonical). Seeds: every encoding of the golden vectors, and their
// first halves.

// goldenSeeds adds every envelope (kind "key_envelope") or record
// ("record") encoding of the golden file, valid or not, to f.
func goldenSeeds(f *testing.F, kind string) {
	g := readGolden(f)
	add := func(b []byte) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	if kind == "key_envelope" {
		for _, e := range g.Envelopes {
			add(e.Encoding)
		}
	} else {
		for _, r := range g.Records {
			add(r.Encoding)
		}
	}
	for _, c := range g.Failures {
		if c.Kind == kind && len(c.Encoding) > 0 {
			add(c.Encoding)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{FormatVersion})
}

// onlyErrors fails t unless err wraps one of allowed.
func onlyErrors(t *testing.T, err error, allowed ...error) {
	t.Helper()
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	t.Fatalf("error %v is none of the documented ones", err)
}

func FuzzParseKeyEnvelope(f *testing.F) {
	goldenSeeds(f, "key_envelope")
	bob := dev(f, "bob-1").local
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseKeyEnvelope(data)
		if err != nil {
			onlyErrors(t, err, ErrMalformed, ErrUnsupportedFormat, ErrUnsupportedSuite, ErrTooManyRecipients)
			return
		}
		if re, err := e.Marshal(); err != nil || !bytes.Equal(re, data) {
			t.Fatalf("decoded envelope re-encodes differently (%v):\n got %x\nwant %x", err, re, data)
		}
		// Open runs on whatever parses, with the named creator's key if
		// it is a test device.
		creator, ok := deviceByRef(t, e.Creator)
		if !ok {
			return
		}
		if _, err := e.Open(testConversation, "alice", creator.public, bob); err != nil {
			onlyErrors(t, err, ErrBadSignature, ErrWrongConversation, ErrNotARecipient, ErrUnwrap)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	goldenSeeds(f, "record")
	ring := goldenSet(readGolden(f)).keyring(f, "bob-1")
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			onlyErrors(t, err, ErrMalformed, ErrUnsupportedFormat, ErrUnsupportedSuite)
			return
		}
		if re, err := r.Marshal(); err != nil || !bytes.Equal(re, data) {
			t.Fatalf("decoded record re-encodes differently (%v):\n got %x\nwant %x", err, re, data)
		}
		sender, ok := deviceByRef(t, r.Sending())
		if !ok {
			return
		}
		if _, err := Open(ring, r, sender.public, &ReplayGuard{}); err != nil {
			onlyErrors(t, err, ErrBadSignature, ErrWrongConversation, ErrUnknownKeyVersion, ErrNotARecipient,
				ErrUnknownDevice, ErrSuiteMismatch, ErrBadAD, ErrBadPlaintext)
		}
	})
}

func FuzzLoadPins(f *testing.F) {
	p := &Pins{}
	if _, err := p.Check("bob", publics(f, "bob-1", "bob-2")); err != nil {
		f.Fatal(err)
	}
	if _, err := p.Check("alice", publics(f, "alice-1")); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), "pins")
	if err := p.Save(path); err != nil {
		f.Fatal(err)
	}
	saved, _ := os.ReadFile(path)
	f.Add(saved)
	f.Add([]byte("bob 00\n"))
	f.Add([]byte("# only a comment\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePins(data)
		if err != nil {
			onlyErrors(t, err, ErrMalformed)
			return
		}
		path := filepath.Join(t.TempDir(), "pins")
		if err := p.Save(path); err != nil {
			t.Fatal(err)
		}
		q, err := LoadPins(path)
		if err != nil {
			t.Fatalf("saved pins do not load: %v", err)
		}
		if err := q.Save(path + "2"); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(path)
		b, _ := os.ReadFile(path + "2")
		if !bytes.Equal(a, b) {
			t.Fatalf("pins change across save and load:\n%s\n%s", a, b)
		}
	})
}

func FuzzReplayGuardJSON(f *testing.F) {
	w := newWorld(f)
	v := w.vectorSet()
	bob := &party{d: dev(f, "bob-1"), ring: v.keyring(f, "bob-1"), guard: &ReplayGuard{}}
	for _, name := range []string{"rec-1", "rec-2", "rec-3"} {
		if _, err := bob.open(f, w.records[name]); err != nil {
			f.Fatal(err)
		}
	}
	saved, _ := json.Marshal(bob.guard)
	f.Add(saved)
	f.Add([]byte(`{"counters":[],"ids":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &ReplayGuard{}
		if err := g.UnmarshalJSON(data); err != nil {
			onlyErrors(t, err, ErrMalformed)
			return
		}
		a, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		h := &ReplayGuard{}
		if err := json.Unmarshal(a, h); err != nil {
			t.Fatalf("a marshalled guard does not load: %v", err)
		}
		b, _ := json.Marshal(h)
		if !bytes.Equal(a, b) {
			t.Fatalf("guard changes across marshal and load:\n%s\n%s", a, b)
		}
	})
}
