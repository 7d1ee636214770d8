package protocol

import "fmt"

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
