package protocol_test

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Fuzz targets for every decoder of bytes a peer controls. Beyond "never
// panics", each checks that a decoder fails only with its documented codes
// and that whatever decodes re-encodes to the identical bytes (the
// encodings are canonical). Seeds: the golden encodings, random valid
// messages, and the files in testdata/fuzz/FuzzXxx.

// addHandshakeSeeds seeds f with the golden encodings and a few random
// valid messages of type typ, plus their first half (a truncation).
func addHandshakeSeeds(f *testing.F, typ byte, random func(*mrand.Rand) message) {
	for _, g := range goldenMessages {
		if enc := g.msg.Marshal(); enc[0] == typ {
			f.Add(enc)
			f.Add(enc[:len(enc)/2])
		}
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 4 {
		enc := random(r).Marshal()
		if len(enc) > 300 { // keep seeds small; the fuzzer grows them
			continue
		}
		f.Add(enc)
	}
	f.Add([]byte{})
	f.Add([]byte{typ})
}

// fuzzDecoder is the body shared by the handshake decoder targets.
func fuzzDecoder(f *testing.F, decode func([]byte) (message, error), codes ...protocol.Code) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decode(data)
		if err != nil {
			for _, c := range codes {
				if errors.Is(err, c) {
					return
				}
			}
			t.Fatalf("error %v carries %s, not one of %v", err, protocol.CodeOf(err), codes)
		}
		if re := m.Marshal(); !bytes.Equal(re, data) {
			t.Fatalf("decoded %+v re-encodes differently:\n got %x\nwant %x", m, re, data)
		}
	})
}

func FuzzUnmarshalClientHello(f *testing.F) {
	addHandshakeSeeds(f, protocol.TypeClientHello, func(r *mrand.Rand) message {
		// Small random hellos: few suites, a short key.
		h := randClientHello(r).(*protocol.ClientHello)
		h.Suites = h.Suites[:1+len(h.Suites)%3]
		if len(h.SessionKey) > 40 {
			h.SessionKey = h.SessionKey[:40]
		}
		return h
	})
	f.Add(rawClientHello([]byte{0, 1, 0}, []byte("k"), nil))
	f.Add(rawClientHello([]byte{0, 1}, nil, nil))
	fuzzDecoder(f, decodeAs(protocol.UnmarshalClientHello),
		protocol.CodeUnexpectedMessage, protocol.CodeMalformed, protocol.CodeBadKey)
}

func FuzzUnmarshalServerHello(f *testing.F) {
	addHandshakeSeeds(f, protocol.TypeServerHello, func(r *mrand.Rand) message {
		h := randServerHello(r).(*protocol.ServerHello)
		h.IdentityKey = h.IdentityKey[:1+len(h.IdentityKey)%40]
		if len(h.WrappedSecret) > 40 {
			h.WrappedSecret = h.WrappedSecret[:40]
		}
		return h
	})
	f.Add(rawServerHello(0x03, []byte("k"), nil))
	f.Add(rawServerHello(0x01, []byte("k"), []byte("w")))
	fuzzDecoder(f, decodeAs(protocol.UnmarshalServerHello),
		protocol.CodeUnexpectedMessage, protocol.CodeMalformed, protocol.CodeBadKey)
}

func FuzzUnmarshalServerVerify(f *testing.F) {
	addHandshakeSeeds(f, protocol.TypeServerVerify, func(r *mrand.Rand) message {
		return &protocol.ServerVerify{Signature: randBytes(r, 1+r.IntN(64))}
	})
	f.Add(rawServerVerify(nil))
	fuzzDecoder(f, decodeAs(protocol.UnmarshalServerVerify), protocol.CodeUnexpectedMessage, protocol.CodeMalformed)
}

func FuzzUnmarshalFinished(f *testing.F) {
	addHandshakeSeeds(f, protocol.TypeFinished, randFinished)
	fuzzDecoder(f, decodeAs(protocol.UnmarshalFinished), protocol.CodeUnexpectedMessage, protocol.CodeMalformed)
}

func FuzzUnmarshalAlert(f *testing.F) {
	addHandshakeSeeds(f, protocol.TypeAlert, func(r *mrand.Rand) message {
		return &protocol.Alert{Code: protocol.Code(r.Uint32()), Reason: randUTF8(r, 40)}
	})
	f.Add(rawAlert(5, []byte("bad \xff")))
	f.Add(rawAlert(5, bytes.Repeat([]byte("é"), 128)))
	fuzzDecoder(f, decodeAs(protocol.UnmarshalAlert), protocol.CodeUnexpectedMessage, protocol.CodeMalformed)
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range goldenAppMessages {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `{}`, `{"t":""}`, `{"t":"send","body":"\ud800"}`, `{"t":"error","code":70000}`,
		`{"t":"join","id":"` + strings.ToUpper(testUUID) + `","ts":1,"room":"a","name":"-"}`,
		`{"t":"send","id":"` + testUUID + `","ts":1,"room":"r","body":"\u0000"}`,
		`{"t":"joined","members":[]}`, `{"t":"ready","session":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := protocol.DecodeMessage(data)
		if err != nil {
			if !errors.Is(err, protocol.CodeMalformed) {
				t.Fatalf("decode error %v is not malformed", err)
			}
			return
		}
		if m.Type == "" {
			t.Fatal("decoded a message without a type")
		}
		if err := protocol.ValidateRequest(m); err != nil {
			if c := protocol.CodeOf(err); c != protocol.CodeBadRequest && c != protocol.CodeTooLarge {
				t.Fatalf("ValidateRequest: %v carries %s", err, c)
			}
		} else {
			switch m.Type {
			case protocol.MsgJoin, protocol.MsgLeave, protocol.MsgSend:
				if !protocol.ValidName(m.Room) {
					t.Fatalf("valid %s request with room %q", m.Type, m.Room)
				}
			case protocol.MsgRegister, protocol.MsgLogin, protocol.MsgAuth, protocol.MsgLookup:
				if !protocol.ValidUserName(m.User) {
					t.Fatalf("valid %s request with user %q", m.Type, m.User)
				}
			}
		}
		// JSON is not canonical, so check that encoding is stable instead:
		// encode, decode, encode gives the same bytes and an equal message.
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		m2, err := protocol.DecodeMessage(enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
	})
}

// Fixed keys of the layers FuzzRecordOpen opens with.
var (
	fuzzGCMKey, fuzzGCMIV    = seq(0x11, 32), seq(0x33, 12)
	fuzzCBCEnc, fuzzCBCMAC   = seq(0x55, 32), seq(0x77, 32)
	fuzzRecordPlaintexts     = []string{"", "a", "fifteen bytes..", "sixteen bytes...", "seventeen bytes..", `{"t":"send","id":"` + testUUID + `","ts":1700000000000,"room":"general","body":"hello"}`}
	fuzzRecordPlaintextKnown = func() map[string]bool {
		m := map[string]bool{}
		for _, p := range fuzzRecordPlaintexts {
			m[p] = true
		}
		return m
	}()
)

func fuzzLayer(t testing.TB, suite protocol.Suite) *protocol.RecordLayer {
	if suite == protocol.SuiteAES256GCM {
		return newLayer(t, suite, fuzzGCMKey, fuzzGCMIV)
	}
	return newLayer(t, suite, fuzzCBCEnc, fuzzCBCMAC)
}

// FuzzRecordOpen opens arbitrary bytes as the first record (sequence 0) of
// a GCM and a CBC layer with fixed keys. An open may succeed only on a
// record the test sealed: its plaintext must be one of
// fuzzRecordPlaintexts, and a GCM record (deterministic) must be exactly
// what sealing that plaintext gives. A failed open must carry a record
// error code and leave the layer at sequence 0.
func FuzzRecordOpen(f *testing.F) {
	for _, suite := range suites {
		seal := fuzzLayer(f, suite)
		for _, p := range fuzzRecordPlaintexts {
			frame := mustSeal(f, seal, []byte(p))
			// seal moves on: only the first frame is at sequence 0; the
			// others are seeds for the sequence check.
			f.Add(frame)
		}
		first := mustSeal(f, fuzzLayer(f, suite), []byte("a"))
		f.Add(first[:len(first)-1])
		flipped := bytes.Clone(first)
		flipped[len(flipped)/2] ^= 4
		f.Add(flipped)
	}
	f.Add([]byte{protocol.TypeRecord})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, suite := range suites {
			l := fuzzLayer(t, suite)
			pt, err := l.Open(data)
			if err != nil {
				switch protocol.CodeOf(err) {
				case protocol.CodeMalformed, protocol.CodeFrameTooLarge, protocol.CodeBadSequence, protocol.CodeBadRecord:
				default:
					t.Fatalf("%s: open error %v", suite, err)
				}
				if l.Seq() != 0 {
					t.Fatalf("%s: a failed open moved the sequence to %d", suite, l.Seq())
				}
				continue
			}
			if !fuzzRecordPlaintextKnown[string(pt)] {
				t.Fatalf("%s: opened a record the test never sealed: %x → %q", suite, data, pt)
			}
			if suite == protocol.SuiteAES256GCM {
				if want := mustSeal(t, fuzzLayer(t, suite), pt); !bytes.Equal(data, want) {
					t.Fatalf("GCM: opened %x, which is not the record sealing %q (%x)", data, pt, want)
				}
			}
			if l.Seq() != 1 {
				t.Fatalf("%s: sequence %d after one open", suite, l.Seq())
			}
		}
	})
}

// TestFuzzRecordLayers checks that FuzzRecordOpen's success path is
// reachable: its layers open the first record of a layer with the same keys.
func TestFuzzRecordLayers(t *testing.T) {
	for _, suite := range suites {
		for _, p := range fuzzRecordPlaintexts {
			pt, err := fuzzLayer(t, suite).Open(mustSeal(t, fuzzLayer(t, suite), []byte(p)))
			if err != nil || string(pt) != p {
				t.Fatalf("%s %q: %q, %v", suite, p, pt, err)
			}
		}
	}
}
