package protocol

import (
	"crypto/hmac"
	"fmt"
)

// FrameIO is what a handshake reads from and writes to: whole frames, one
// per WebSocket message.
type FrameIO interface {
	ReadFrame() ([]byte, error)
	WriteFrame([]byte) error
}

// HandshakeIO reads and writes handshake frames and feeds every one of them
// to the transcript, so that no step of either side can forget it.
type HandshakeIO struct {
	Conn       FrameIO
	Transcript *Transcript
}

// Read reads the next frame, which must be of type want. An Alert from the
// peer is returned as a *PeerError; any other type is
// CodeUnexpectedMessage. The frame is added to the transcript.
func (h *HandshakeIO) Read(want byte) ([]byte, error) {
	frame, err := h.Conn.ReadFrame()
	if err != nil {
		return nil, err
	}
	typ, err := FrameType(frame)
	if err != nil {
		return nil, err
	}
	if typ == TypeAlert {
		a, err := UnmarshalAlert(frame)
		if err != nil {
			return nil, err
		}
		return nil, &PeerError{Code: a.Code, Reason: a.Reason}
	}
	if typ != want {
		return nil, fmt.Errorf("protocol: handshake: got frame type %#02x, want %#02x: %w", typ, want, CodeUnexpectedMessage)
	}
	h.Transcript.Add(frame)
	return frame, nil
}

// Write adds frame to the transcript and sends it.
func (h *HandshakeIO) Write(frame []byte) error {
	h.Transcript.Add(frame)
	return h.Conn.WriteFrame(frame)
}

// WriteFinished sends this side's Finished: the MAC keyed by label's
// Finished key (bound to keyTranscript, the hash after ServerHello) over
// the transcript so far.
func (h *HandshakeIO) WriteFinished(ks *KeySchedule, label string, keyTranscript []byte) error {
	f := &Finished{VerifyData: ks.FinishedMAC(label, keyTranscript, h.Transcript.Sum())}
	return h.Write(f.Marshal())
}

// ReadFinished reads the peer's Finished and compares it, in constant
// time, with the MAC of label over the transcript before it. A mismatch
// is CodeBadFinished.
func (h *HandshakeIO) ReadFinished(ks *KeySchedule, label string, keyTranscript []byte) error {
	want := ks.FinishedMAC(label, keyTranscript, h.Transcript.Sum())
	frame, err := h.Read(TypeFinished)
	if err != nil {
		return err
	}
	f, err := UnmarshalFinished(frame)
	if err != nil {
		return err
	}
	if !hmac.Equal(f.VerifyData[:], want[:]) {
		return fmt.Errorf("protocol: %s: %w", label, CodeBadFinished)
	}
	return nil
}
