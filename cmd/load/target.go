package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// The servers -target can drive.
const (
	targetMessenger  = "messenger"
	targetCentrifugo = "centrifugo"
)

// loadConn is one simulated client's connection to the server under test,
// whichever server it is: the connect and fanout scenarios are written
// against it only, so that both servers' figures come from the same code
// (same bodies and timestamps, same counting, same percentiles).
type loadConn interface {
	// Join enters a room: a messenger join, a Centrifugo subscribe.
	Join(ctx context.Context, room string) error
	// Publish sends body to room without waiting for an answer; an error
	// answer arrives later through Receive's onError.
	Publish(room, body string) error
	// Receive calls onMessage with the body of every message delivered to
	// a joined room and the time it was taken off the connection, and
	// onError with every error answer; it returns when the connection
	// ends. Exactly one Receive runs per connection.
	Receive(onMessage func(body string, at time.Time), onError func(error))
	// Done is closed when the connection has ended; Err says why.
	Done() <-chan struct{}
	Err() error
	Close() error
}

// dial opens one connection to -url the way -target speaks: for the
// messenger a full handshake (pkg/client), for Centrifugo a WebSocket and
// its connect command.
func (l *loader) dial(ctx context.Context) (loadConn, error) {
	if l.o.target == targetCentrifugo {
		c, err := dialCentrifugo(ctx, l.o.url)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	c, err := client.Dial(ctx, l.config())
	if err != nil {
		return nil, err
	}
	return messengerConn{c}, nil
}

// opens says in words what one dial and join of -target does, for the
// report headings.
func (l *loader) opens() string {
	switch {
	case l.o.target == targetCentrifugo:
		return "Centrifugo connect + subscribe"
	case l.o.connectBy == "resume":
		return "resumption + join"
	}
	return "full handshake + join"
}

// checkTarget validates -target against the scenarios: Centrifugo has no
// handshake and no session to resume, so it runs connect and fanout only
// (the default when -scenario is not given).
func checkTarget(o *options, scenarioSet bool) error {
	switch o.target {
	case targetMessenger:
		return nil
	case targetCentrifugo:
	default:
		return fmt.Errorf("-target: unknown target %q (messenger, centrifugo)", o.target)
	}
	if !scenarioSet {
		o.scenarios = []string{"connect", "fanout"}
		return nil
	}
	for _, s := range o.scenarios {
		if s != "connect" && s != "fanout" {
			return fmt.Errorf("-target centrifugo: scenario %q needs the messenger's handshake (connect and fanout only)", s)
		}
	}
	return nil
}

// messengerConn is a pkg/client connection: the messenger's full
// protocol, every message sealed.
type messengerConn struct{ c *client.Conn }

func (m messengerConn) Join(ctx context.Context, room string) error {
	_, err := m.c.Join(ctx, room, "")
	return err
}

func (m messengerConn) Publish(room, body string) error {
	return m.c.WriteMessage(&protocol.Message{Type: protocol.MsgSend, ID: uuid.NewString(), TS: time.Now().UnixMilli(), Room: room, Body: body})
}

func (m messengerConn) Receive(onMessage func(string, time.Time), onError func(error)) {
	for msg := range m.c.Messages() {
		now := time.Now()
		switch msg.Type {
		case protocol.MsgMessage:
			onMessage(msg.Body, now)
		case protocol.MsgError:
			onError(&protocol.PeerError{Code: msg.Code, Reason: msg.Error})
		}
	}
}

func (m messengerConn) Done() <-chan struct{} { return m.c.Done() }
func (m messengerConn) Err() error            { return m.c.Err() }
func (m messengerConn) Close() error          { return m.c.Close() }
