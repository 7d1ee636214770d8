package server

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// readFrame reads one binary WebSocket message and maps transport failures
// to protocol codes: an oversized message is CodeFrameTooLarge, a text
// message CodeMalformed, a deadline CodeHandshakeTimeout.
func readFrame(ws *websocket.Conn) ([]byte, error) {
	typ, data, err := readLimited(ws)
	if err != nil {
		return nil, classifyReadError(err)
	}
	if typ != websocket.BinaryMessage {
		return nil, fmt.Errorf("server: text frame: %w", protocol.CodeMalformed)
	}
	return data, nil
}

// errFrameTooLarge is what readLimited returns for a frame over
// protocol.MaxFrameSize.
var errFrameTooLarge = fmt.Errorf("server: frame larger than %d bytes: %w", protocol.MaxFrameSize, protocol.CodeFrameTooLarge)

// readLimited reads one WebSocket message of at most protocol.MaxFrameSize
// bytes. It reads no further into a larger one and returns
// errFrameTooLarge, leaving the connection open so that the caller can
// still send its Alert (gorilla's own read limit would close it first).
func readLimited(ws *websocket.Conn) (int, []byte, error) {
	typ, r, err := ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, protocol.MaxFrameSize+1))
	if err != nil {
		return 0, nil, err
	}
	if len(data) > protocol.MaxFrameSize {
		return 0, nil, errFrameTooLarge
	}
	return typ, data, nil
}

// errPeerClosed reports that the peer closed or dropped the connection:
// nothing more can be said to it.
var errPeerClosed = errors.New("server: peer closed the connection")

func classifyReadError(err error) error {
	if errors.Is(err, errFrameTooLarge) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("server: read: %w", protocol.CodeHandshakeTimeout)
	}
	return fmt.Errorf("%w: %v", errPeerClosed, err)
}
