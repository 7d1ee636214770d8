package protocol_test

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// message is what every handshake message type has in common.
type message interface{ Marshal() []byte }

// handshakeType describes one handshake message type for the generic
// tests: its type byte, a generator of random valid values, and its
// decoder.
type handshakeType struct {
	name      string
	typ       byte
	random    func(r *mrand.Rand) message
	unmarshal func([]byte) (message, error)
}

// decodeAs adapts an Unmarshal function, keeping a failed decode an untyped
// nil.
func decodeAs[M message](f func([]byte) (M, error)) func([]byte) (message, error) {
	return func(b []byte) (message, error) {
		m, err := f(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

func randClientHello(r *mrand.Rand) message {
	h := &protocol.ClientHello{Version: uint16(r.Uint32()), Suites: make([]protocol.Suite, 1+r.IntN(127))}
	copy(h.Random[:], randBytes(r, protocol.RandomSize))
	for i := range h.Suites {
		h.Suites[i] = protocol.Suite(r.Uint32())
	}
	// 0: key only, 1: resume id only, 2: both (resume with fallback).
	shape := r.IntN(3)
	if shape != 1 {
		h.SessionKey = randBytes(r, 1+r.IntN(protocol.MaxPublicKeySize))
	}
	if shape != 0 {
		h.ResumeID = randBytes(r, protocol.SessionIDSize)
	}
	return h
}

func randServerHello(r *mrand.Rand) message {
	h := &protocol.ServerHello{
		Version:     uint16(r.Uint32()),
		Suite:       protocol.Suite(r.Uint32()),
		Resumed:     r.IntN(2) == 0,
		IdentityKey: randBytes(r, 1+r.IntN(protocol.MaxPublicKeySize)),
	}
	copy(h.Random[:], randBytes(r, protocol.RandomSize))
	copy(h.SessionID[:], randBytes(r, protocol.SessionIDSize))
	if !h.Resumed {
		h.WrappedSecret = randBytes(r, 1+r.IntN(1024))
	}
	return h
}

func randServerVerify(r *mrand.Rand) message {
	return &protocol.ServerVerify{Signature: randBytes(r, 1+r.IntN(1024))}
}

func randFinished(r *mrand.Rand) message {
	f := &protocol.Finished{}
	copy(f.VerifyData[:], randBytes(r, protocol.FinishedSize))
	return f
}

func randAlert(r *mrand.Rand) message {
	return &protocol.Alert{Code: protocol.Code(r.Uint32()), Reason: randUTF8(r, protocol.MaxAlertReason)}
}

var handshakeTypes = []handshakeType{
	{"ClientHello", protocol.TypeClientHello, randClientHello, decodeAs(protocol.UnmarshalClientHello)},
	{"ServerHello", protocol.TypeServerHello, randServerHello, decodeAs(protocol.UnmarshalServerHello)},
	{"ServerVerify", protocol.TypeServerVerify, randServerVerify, decodeAs(protocol.UnmarshalServerVerify)},
	{"Finished", protocol.TypeFinished, randFinished, decodeAs(protocol.UnmarshalFinished)},
	{"Alert", protocol.TypeAlert, randAlert, decodeAs(protocol.UnmarshalAlert)},
}

func TestHandshakeMessagesRoundTrip(t *testing.T) {
	r := newRand(t)
	iterations := 200
	if testing.Short() {
		iterations = 20
	}
	for _, ht := range handshakeTypes {
		t.Run(ht.name, func(t *testing.T) {
			for i := range iterations {
				m := ht.random(r)
				enc := m.Marshal()
				if enc[0] != ht.typ {
					t.Fatalf("#%d: type byte %#02x, want %#02x", i, enc[0], ht.typ)
				}
				got, err := ht.unmarshal(enc)
				if err != nil {
					t.Fatalf("#%d: unmarshal %+v: %v", i, m, err)
				}
				if !reflect.DeepEqual(got, m) {
					t.Fatalf("#%d: round trip:\n got %+v\nwant %+v", i, got, m)
				}
				if re := got.Marshal(); !bytes.Equal(re, enc) {
					t.Fatalf("#%d: re-marshal differs:\n got %x\nwant %x", i, re, enc)
				}
			}
		})
	}
}

// TestHandshakeMessagesRejectMangled checks, for random valid encodings of
// each type, that every truncated prefix, a trailing byte and every other
// type byte are rejected with the documented code, never a panic.
func TestHandshakeMessagesRejectMangled(t *testing.T) {
	r := newRand(t)
	for _, ht := range handshakeTypes {
		t.Run(ht.name, func(t *testing.T) {
			for range 4 {
				enc := ht.random(r).Marshal()
				for n := range len(enc) {
					_, err := ht.unmarshal(enc[:n])
					want := protocol.CodeMalformed
					if n == 0 {
						want = protocol.CodeUnexpectedMessage
					}
					if !errors.Is(err, want) {
						t.Fatalf("prefix of %d/%d bytes: err = %v, want %s", n, len(enc), err, want)
					}
				}
				for _, extra := range []byte{0x00, 0xff} {
					_, err := ht.unmarshal(append(bytes.Clone(enc), extra))
					if !errors.Is(err, protocol.CodeMalformed) {
						t.Fatalf("trailing %#02x: err = %v, want malformed", extra, err)
					}
				}
				for typ := range 256 {
					if byte(typ) == ht.typ {
						continue
					}
					bad := bytes.Clone(enc)
					bad[0] = byte(typ)
					if _, err := ht.unmarshal(bad); !errors.Is(err, protocol.CodeUnexpectedMessage) {
						t.Fatalf("type byte %#02x: err = %v, want unexpected message", typ, err)
					}
				}
			}
		})
	}
}

// Raw builders, to encode what Marshal never would.

func rawClientHello(suites, key, resume []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(protocol.TypeClientHello)
	b.AddUint16(protocol.Version)
	b.AddBytes(make([]byte, protocol.RandomSize))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(suites) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(resume) })
	return b.BytesOrPanic()
}

func rawServerHello(flags uint8, key, wrapped []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(protocol.TypeServerHello)
	b.AddUint16(protocol.Version)
	b.AddBytes(make([]byte, protocol.RandomSize))
	b.AddUint16(uint16(protocol.SuiteAES256GCM))
	b.AddUint8(flags)
	b.AddBytes(make([]byte, protocol.SessionIDSize))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(wrapped) })
	return b.BytesOrPanic()
}

func rawAlert(code uint16, reason []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(protocol.TypeAlert)
	b.AddUint16(code)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(reason) })
	return b.BytesOrPanic()
}

func rawServerVerify(sig []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint8(protocol.TypeServerVerify)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
	return b.BytesOrPanic()
}

// TestHandshakeMessageRules checks each decoder's content rules, beyond
// structure. want 0 means the frame is accepted.
func TestHandshakeMessageRules(t *testing.T) {
	key := []byte("der")
	id := seq(0x40, protocol.SessionIDSize)
	gcm := []byte{0x00, 0x01}
	var (
		ch = decodeAs(protocol.UnmarshalClientHello)
		sh = decodeAs(protocol.UnmarshalServerHello)
		sv = decodeAs(protocol.UnmarshalServerVerify)
		fi = decodeAs(protocol.UnmarshalFinished)
		al = decodeAs(protocol.UnmarshalAlert)
	)
	cases := []struct {
		name   string
		decode func([]byte) (message, error)
		frame  []byte
		want   protocol.Code
	}{
		{"client hello: key only", ch, rawClientHello(gcm, key, nil), 0},
		{"client hello: resume id only", ch, rawClientHello(gcm, nil, id), 0},
		{"client hello: key and resume id", ch, rawClientHello(gcm, key, id), 0},
		{"client hello: unknown suites are the server's business", ch, rawClientHello([]byte{0xff, 0xff}, key, nil), 0},
		{"client hello: 127 suites", ch, rawClientHello(bytes.Repeat(gcm, 127), key, nil), 0},
		{"client hello: empty suite list", ch, rawClientHello(nil, key, nil), protocol.CodeMalformed},
		{"client hello: odd suite bytes", ch, rawClientHello([]byte{0, 1, 0}, key, nil), protocol.CodeMalformed},
		{"client hello: one suite byte", ch, rawClientHello([]byte{1}, key, nil), protocol.CodeMalformed},
		{"client hello: resume id of 1 byte", ch, rawClientHello(gcm, key, id[:1]), protocol.CodeMalformed},
		{"client hello: resume id of 15 bytes", ch, rawClientHello(gcm, key, id[:15]), protocol.CodeMalformed},
		{"client hello: resume id of 17 bytes", ch, rawClientHello(gcm, key, append(bytes.Clone(id), 0)), protocol.CodeMalformed},
		{"client hello: neither key nor resume id", ch, rawClientHello(gcm, nil, nil), protocol.CodeMalformed},
		{"client hello: key of MaxPublicKeySize", ch, rawClientHello(gcm, make([]byte, protocol.MaxPublicKeySize), nil), 0},
		{"client hello: oversize key", ch, rawClientHello(gcm, make([]byte, protocol.MaxPublicKeySize+1), nil), protocol.CodeBadKey},
		{"client hello: oversize key with resume id", ch, rawClientHello(gcm, make([]byte, protocol.MaxPublicKeySize+1), id), protocol.CodeBadKey},

		{"server hello: full", sh, rawServerHello(0, key, []byte("wrapped")), 0},
		{"server hello: resumed", sh, rawServerHello(1, key, nil), 0},
		{"server hello: resumed with wrapped secret", sh, rawServerHello(1, key, []byte("wrapped")), protocol.CodeMalformed},
		{"server hello: full without wrapped secret", sh, rawServerHello(0, key, nil), protocol.CodeMalformed},
		{"server hello: unknown flag 0x02", sh, rawServerHello(0x02, key, []byte("w")), protocol.CodeMalformed},
		{"server hello: unknown flag 0x80", sh, rawServerHello(0x80, key, []byte("w")), protocol.CodeMalformed},
		{"server hello: resumed plus unknown flag", sh, rawServerHello(0x03, key, nil), protocol.CodeMalformed},
		{"server hello: no identity key", sh, rawServerHello(0, nil, []byte("w")), protocol.CodeBadKey},
		{"server hello: identity key of MaxPublicKeySize", sh, rawServerHello(0, make([]byte, protocol.MaxPublicKeySize), []byte("w")), 0},
		{"server hello: oversize identity key", sh, rawServerHello(0, make([]byte, protocol.MaxPublicKeySize+1), []byte("w")), protocol.CodeBadKey},

		{"server verify: one byte", sv, rawServerVerify([]byte{1}), 0},
		{"server verify: empty signature", sv, rawServerVerify(nil), protocol.CodeMalformed},

		{"finished: 32 bytes", fi, append([]byte{protocol.TypeFinished}, make([]byte, 32)...), 0},
		{"finished: 31 bytes", fi, append([]byte{protocol.TypeFinished}, make([]byte, 31)...), protocol.CodeMalformed},
		{"finished: 33 bytes", fi, append([]byte{protocol.TypeFinished}, make([]byte, 33)...), protocol.CodeMalformed},
		{"finished: empty frame", fi, nil, protocol.CodeUnexpectedMessage},

		{"alert: empty reason", al, rawAlert(5, nil), 0},
		{"alert: unknown code is carried", al, rawAlert(0xffff, []byte("x")), 0},
		{"alert: reason of MaxAlertReason bytes", al, rawAlert(5, bytes.Repeat([]byte("a"), protocol.MaxAlertReason)), 0},
		{"alert: reason too long", al, rawAlert(5, bytes.Repeat([]byte("a"), protocol.MaxAlertReason+1)), protocol.CodeMalformed},
		{"alert: reason not UTF-8", al, rawAlert(5, []byte("bad \xff byte")), protocol.CodeMalformed},
		{"alert: reason with a cut rune", al, rawAlert(5, []byte("\xe2\x82")), protocol.CodeMalformed},
		{"alert: reason with a surrogate", al, rawAlert(5, []byte("\xed\xa0\x80")), protocol.CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.decode(tc.frame)
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if re := m.Marshal(); !bytes.Equal(re, tc.frame) {
					t.Fatalf("re-marshal differs:\n got %x\nwant %x", re, tc.frame)
				}
				return
			}
			if m != nil {
				t.Errorf("returned %+v with the error", m)
			}
			wantCode(t, err, tc.want)
		})
	}
}

func TestAlertMarshalCutsLongReason(t *testing.T) {
	cases := []string{
		strings.Repeat("a", 300),
		strings.Repeat("é", 200),                // 2-byte runes, cut on a boundary
		"a" + strings.Repeat("€", 100),          // 3-byte runes, cut inside one
		"ab" + strings.Repeat("\U0001F600", 80), // 4-byte runes
	}
	for _, reason := range cases {
		a, err := protocol.UnmarshalAlert((&protocol.Alert{Code: protocol.CodeInternal, Reason: reason}).Marshal())
		if err != nil {
			t.Fatalf("%.10q…: %v", reason, err)
		}
		got := a.Reason
		if len(got) > protocol.MaxAlertReason || len(got) <= protocol.MaxAlertReason-utf8.UTFMax ||
			!utf8.ValidString(got) || !strings.HasPrefix(reason, got) {
			t.Errorf("%.10q… cut to %d bytes %.10q…", reason, len(got), got)
		}
	}
}

func TestFrameType(t *testing.T) {
	if _, err := protocol.FrameType(nil); !errors.Is(err, protocol.CodeMalformed) {
		t.Fatalf("empty frame: err = %v, want malformed", err)
	}
	for _, typ := range []byte{protocol.TypeClientHello, protocol.TypeRecord, 0xff} {
		if got, err := protocol.FrameType([]byte{typ, 1, 2}); err != nil || got != typ {
			t.Fatalf("FrameType = %#02x, %v; want %#02x", got, err, typ)
		}
	}
}
