package protocol

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// Version is the protocol version this package speaks.
const Version uint16 = 1

// Frame types: the first byte of every WebSocket message.
const (
	TypeClientHello  byte = 0x01
	TypeServerHello  byte = 0x02
	TypeServerVerify byte = 0x03
	TypeFinished     byte = 0x04
	TypeAlert        byte = 0x15
	TypeRecord       byte = 0x17
)

// Sizes fixed by the protocol.
const (
	RandomSize    = 32
	SessionIDSize = 16
	SecretSize    = 32
	FinishedSize  = 32

	// MaxPublicKeySize bounds a DER-encoded public key (an RSA-8192 key
	// is about 1.1 KB).
	MaxPublicKeySize = 2048
	// MaxAlertReason bounds an Alert's reason text, in bytes.
	MaxAlertReason = 256
	// MaxPlaintext is the largest application message inside one record.
	MaxPlaintext = 64 << 10
	// MaxFrameSize is the largest WebSocket message either side accepts:
	// a record of MaxPlaintext plus header, IV, padding and tag.
	MaxFrameSize = MaxPlaintext + 1024
)

// ClientHello opens the handshake (client → server).
type ClientHello struct {
	Version uint16
	Random  [RandomSize]byte
	Suites  []Suite
	// SessionKey is the PKIX DER of the client's per-session RSA-OAEP
	// public key. It may be empty only when ResumeID is set.
	SessionKey []byte
	// ResumeID, when set (SessionIDSize bytes), asks to resume that
	// session instead of creating a new one.
	ResumeID []byte
}

// Marshal encodes the message, type byte included.
func (m *ClientHello) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(TypeClientHello)
	b.AddUint16(m.Version)
	b.AddBytes(m.Random[:])
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range m.Suites {
			b.AddUint16(uint16(s))
		}
	})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.SessionKey) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.ResumeID) })
	return b.BytesOrPanic()
}

// UnmarshalClientHello decodes a ClientHello frame. It checks structure and
// sizes only; the server decides what it accepts.
func UnmarshalClientHello(data []byte) (*ClientHello, error) {
	m := new(ClientHello)
	s := cryptobyte.String(data)
	var typ uint8
	var suites, key, resume cryptobyte.String
	if !s.ReadUint8(&typ) || typ != TypeClientHello {
		return nil, fmt.Errorf("client hello: %w", CodeUnexpectedMessage)
	}
	if !s.ReadUint16(&m.Version) || !s.CopyBytes(m.Random[:]) ||
		!s.ReadUint8LengthPrefixed(&suites) ||
		!s.ReadUint16LengthPrefixed(&key) ||
		!s.ReadUint8LengthPrefixed(&resume) || !s.Empty() {
		return nil, fmt.Errorf("client hello: %w", CodeMalformed)
	}
	if len(suites) == 0 || len(suites)%2 != 0 {
		return nil, fmt.Errorf("client hello: suite list: %w", CodeMalformed)
	}
	for !suites.Empty() {
		var v uint16
		suites.ReadUint16(&v)
		m.Suites = append(m.Suites, Suite(v))
	}
	if len(key) > MaxPublicKeySize {
		return nil, fmt.Errorf("client hello: session key too large: %w", CodeBadKey)
	}
	if len(resume) != 0 && len(resume) != SessionIDSize {
		return nil, fmt.Errorf("client hello: resume id length: %w", CodeMalformed)
	}
	if len(key) == 0 && len(resume) == 0 {
		return nil, fmt.Errorf("client hello: neither session key nor resume id: %w", CodeMalformed)
	}
	m.SessionKey = append([]byte(nil), key...)
	if len(resume) > 0 {
		m.ResumeID = append([]byte(nil), resume...)
	}
	return m, nil
}

// ServerHello answers a ClientHello (server → client).
type ServerHello struct {
	Version uint16
	Random  [RandomSize]byte
	Suite   Suite
	// Resumed is set when the server resumed the requested session; then
	// WrappedSecret is empty and no ServerVerify follows.
	Resumed   bool
	SessionID [SessionIDSize]byte
	// IdentityKey is the PKIX DER of the server's long-term RSA key.
	IdentityKey []byte
	// WrappedSecret is the fresh session secret encrypted to the client's
	// SessionKey with RSA-OAEP-SHA256 (label LabelWrap).
	WrappedSecret []byte
}

const flagResumed = 0x01

// Marshal encodes the message, type byte included.
func (m *ServerHello) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(TypeServerHello)
	b.AddUint16(m.Version)
	b.AddBytes(m.Random[:])
	b.AddUint16(uint16(m.Suite))
	var flags uint8
	if m.Resumed {
		flags |= flagResumed
	}
	b.AddUint8(flags)
	b.AddBytes(m.SessionID[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.IdentityKey) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.WrappedSecret) })
	return b.BytesOrPanic()
}

// UnmarshalServerHello decodes a ServerHello frame.
func UnmarshalServerHello(data []byte) (*ServerHello, error) {
	m := new(ServerHello)
	s := cryptobyte.String(data)
	var typ, flags uint8
	var suite uint16
	var key, wrapped cryptobyte.String
	if !s.ReadUint8(&typ) || typ != TypeServerHello {
		return nil, fmt.Errorf("server hello: %w", CodeUnexpectedMessage)
	}
	if !s.ReadUint16(&m.Version) || !s.CopyBytes(m.Random[:]) || !s.ReadUint16(&suite) ||
		!s.ReadUint8(&flags) || !s.CopyBytes(m.SessionID[:]) ||
		!s.ReadUint16LengthPrefixed(&key) || !s.ReadUint16LengthPrefixed(&wrapped) || !s.Empty() {
		return nil, fmt.Errorf("server hello: %w", CodeMalformed)
	}
	if flags&^flagResumed != 0 {
		return nil, fmt.Errorf("server hello: unknown flags: %w", CodeMalformed)
	}
	if len(key) == 0 || len(key) > MaxPublicKeySize {
		return nil, fmt.Errorf("server hello: identity key size: %w", CodeBadKey)
	}
	m.Suite = Suite(suite)
	m.Resumed = flags&flagResumed != 0
	if m.Resumed != (len(wrapped) == 0) {
		return nil, fmt.Errorf("server hello: wrapped secret must be present exactly when not resuming: %w", CodeMalformed)
	}
	m.IdentityKey = append([]byte(nil), key...)
	m.WrappedSecret = append([]byte(nil), wrapped...)
	return m, nil
}

// ServerVerify carries the server's signature over the transcript
// (server → client, full handshakes only).
type ServerVerify struct {
	// Signature is RSA-PSS-SHA256 (salt length 32) over
	// SignedContent(ContextServerSignature, transcript hash).
	Signature []byte
}

// Marshal encodes the message, type byte included.
func (m *ServerVerify) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(TypeServerVerify)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.Signature) })
	return b.BytesOrPanic()
}

// UnmarshalServerVerify decodes a ServerVerify frame.
func UnmarshalServerVerify(data []byte) (*ServerVerify, error) {
	s := cryptobyte.String(data)
	var typ uint8
	var sig cryptobyte.String
	if !s.ReadUint8(&typ) || typ != TypeServerVerify {
		return nil, fmt.Errorf("server verify: %w", CodeUnexpectedMessage)
	}
	if !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() || len(sig) == 0 {
		return nil, fmt.Errorf("server verify: %w", CodeMalformed)
	}
	return &ServerVerify{Signature: append([]byte(nil), sig...)}, nil
}

// Finished proves a side holds the session secret and saw the same
// transcript. Both sides send one.
type Finished struct {
	VerifyData [FinishedSize]byte
}

// Marshal encodes the message, type byte included.
func (m *Finished) Marshal() []byte {
	out := make([]byte, 1+FinishedSize)
	out[0] = TypeFinished
	copy(out[1:], m.VerifyData[:])
	return out
}

// UnmarshalFinished decodes a Finished frame.
func UnmarshalFinished(data []byte) (*Finished, error) {
	if len(data) == 0 || data[0] != TypeFinished {
		return nil, fmt.Errorf("finished: %w", CodeUnexpectedMessage)
	}
	if len(data) != 1+FinishedSize {
		return nil, fmt.Errorf("finished: %w", CodeMalformed)
	}
	m := new(Finished)
	copy(m.VerifyData[:], data[1:])
	return m, nil
}

// Alert reports a fatal handshake error in plaintext, just before the
// sender closes the connection.
type Alert struct {
	Code   Code
	Reason string // at most MaxAlertReason bytes of UTF-8; never secret
}

// Marshal encodes the message, type byte included. A reason longer than
// MaxAlertReason is cut.
func (m *Alert) Marshal() []byte {
	reason := m.Reason
	if len(reason) > MaxAlertReason {
		reason = reason[:MaxAlertReason]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	var b cryptobyte.Builder
	b.AddUint8(TypeAlert)
	b.AddUint16(uint16(m.Code))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(reason)) })
	return b.BytesOrPanic()
}

// UnmarshalAlert decodes an Alert frame.
func UnmarshalAlert(data []byte) (*Alert, error) {
	s := cryptobyte.String(data)
	var typ uint8
	var code uint16
	var reason cryptobyte.String
	if !s.ReadUint8(&typ) || typ != TypeAlert {
		return nil, fmt.Errorf("alert: %w", CodeUnexpectedMessage)
	}
	if !s.ReadUint16(&code) || !s.ReadUint16LengthPrefixed(&reason) || !s.Empty() ||
		len(reason) > MaxAlertReason || !utf8.Valid(reason) {
		return nil, fmt.Errorf("alert: %w", CodeMalformed)
	}
	return &Alert{Code: Code(code), Reason: string(reason)}, nil
}

// FrameType returns the type byte of a frame, or an error for an empty one.
func FrameType(frame []byte) (byte, error) {
	if len(frame) == 0 {
		return 0, fmt.Errorf("empty frame: %w", CodeMalformed)
	}
	return frame[0], nil
}
