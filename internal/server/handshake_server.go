package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// handshakeConfig is what the server side of the handshake needs.
type handshakeConfig struct {
	identity    *rsa.PrivateKey
	identityDER []byte
	suites      []protocol.Suite // accepted suites
	sessions    *sessions
}

// serverHandshake holds everything one server-side handshake needs. Its
// handshake method reads like the protocol's sequence (docs/protocol.md,
// "Handshake"); the place in the code is the state.
type serverHandshake struct {
	ctx context.Context
	io  *protocol.HandshakeIO
	cfg *handshakeConfig

	hello     *protocol.ClientHello
	clientKey *rsa.PublicKey
	suite     protocol.Suite
	resumed   bool
	sessionID [protocol.SessionIDSize]byte
	secret    []byte
	state     sessionState // what the session record holds

	ks    *protocol.KeySchedule
	keyTH []byte // transcript hash after ServerHello

	// Results.
	seal, open *protocol.RecordLayer
	exporter   []byte
}

// handshake runs the server side to completion. On error nothing has been
// stored and the caller sends an Alert with protocol.CodeOf(err).
func (hs *serverHandshake) handshake() error {
	if err := hs.readClientHello(); err != nil {
		return err
	}
	if err := hs.processClientHello(); err != nil {
		return err
	}
	if err := hs.sendFlight(); err != nil {
		return err
	}
	if err := hs.readClientFinished(); err != nil {
		return err
	}
	return hs.establish()
}

// sendFlight sends the server's flight: ServerHello, ServerVerify for a
// full handshake, and ServerFinished. The client answers only after the
// last of them, so over a real connection the frames are gathered and
// written with one system call (one TCP segment, one wake-up of the
// client's reader) instead of one each; every frame is still its own
// WebSocket message, exactly as docs/protocol.md has them.
func (hs *serverHandshake) sendFlight() error {
	cc := hs.corkFlight()
	err := hs.sendServerHello()
	if err == nil && !hs.resumed {
		err = hs.sendServerVerify()
	}
	if err == nil {
		err = hs.sendServerFinished()
	}
	// Written even after a failure, so that an Alert the caller sends
	// next is not held back behind frames never sent.
	if cc != nil {
		if uerr := cc.uncork(); err == nil {
			err = uerr
		}
	}
	return err
}

// corkFlight starts gathering the writes of the connection under the
// handshake's WebSocket, when ServeWS upgraded it over a corkConn, and
// returns that connection for sendFlight to uncork; over anything else
// (the benchmarks' in-memory pipe) it returns nil.
func (hs *serverHandshake) corkFlight() *corkConn {
	f, ok := hs.io.Conn.(wsFrames)
	if !ok {
		return nil
	}
	cc, ok := f.ws.NetConn().(*corkConn)
	if !ok {
		return nil
	}
	timeout := 10 * time.Second
	if d, ok := hs.ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	cc.cork(timeout)
	return cc
}

func (hs *serverHandshake) readClientHello() error {
	frame, err := hs.io.Read(protocol.TypeClientHello)
	if err != nil {
		return err
	}
	hs.hello, err = protocol.UnmarshalClientHello(frame)
	return err
}

func (hs *serverHandshake) processClientHello() error {
	h := hs.hello
	if h.Version != protocol.Version {
		return fmt.Errorf("server handshake: version %d, speak %d: %w", h.Version, protocol.Version, protocol.CodeUnsupportedVersion)
	}
	// The client's order of preference decides among the suites we accept.
	hs.suite = 0
	for _, s := range h.Suites {
		if slices.Contains(hs.cfg.suites, s) {
			hs.suite = s
			break
		}
	}
	if hs.suite == 0 {
		return fmt.Errorf("server handshake: %w", protocol.CodeNoCommonSuite)
	}
	if len(h.ResumeID) == protocol.SessionIDSize {
		var id [protocol.SessionIDSize]byte
		copy(id[:], h.ResumeID)
		st, err := hs.cfg.sessions.load(hs.ctx, id)
		switch {
		case err == nil:
			hs.resumed, hs.sessionID, hs.secret, hs.state = true, id, st.secret, st
			return nil
		case len(h.SessionKey) == 0 && errors.Is(err, protocol.CodeSessionUnknown):
			return err
		case len(h.SessionKey) == 0:
			return fmt.Errorf("server handshake: %w: %w", protocol.CodeUnavailable, err)
		}
		// Fall back to a full handshake with the key the client sent.
	}
	key, err := protocol.ParseRSAPublicKey(h.SessionKey)
	if err != nil {
		return err
	}
	hs.clientKey = key
	if hs.sessionID, err = newSessionID(); err != nil {
		return err
	}
	hs.secret = make([]byte, protocol.SecretSize)
	if _, err := rand.Read(hs.secret); err != nil {
		return fmt.Errorf("server handshake: secret: %w", err)
	}
	return nil
}

func (hs *serverHandshake) sendServerHello() error {
	sh := &protocol.ServerHello{
		Version:     protocol.Version,
		Suite:       hs.suite,
		Resumed:     hs.resumed,
		SessionID:   hs.sessionID,
		IdentityKey: hs.cfg.identityDER,
	}
	if _, err := rand.Read(sh.Random[:]); err != nil {
		return fmt.Errorf("server handshake: random: %w", err)
	}
	if !hs.resumed {
		w, err := protocol.WrapSecret(hs.clientKey, hs.secret)
		if err != nil {
			return err
		}
		sh.WrappedSecret = w
	}
	if err := hs.io.Write(sh.Marshal()); err != nil {
		return err
	}
	hs.keyTH = hs.io.Transcript.Sum()
	ks, err := protocol.NewKeySchedule(hs.secret)
	if err != nil {
		return err
	}
	hs.ks = ks
	return nil
}

func (hs *serverHandshake) sendServerVerify() error {
	sig, err := protocol.SignTranscript(hs.cfg.identity, protocol.ContextServerSignature, hs.io.Transcript.Sum())
	if err != nil {
		return err
	}
	return hs.io.Write((&protocol.ServerVerify{Signature: sig}).Marshal())
}

func (hs *serverHandshake) sendServerFinished() error {
	return hs.io.WriteFinished(hs.ks, protocol.LabelServerFinished, hs.keyTH)
}

func (hs *serverHandshake) readClientFinished() error {
	return hs.io.ReadFinished(hs.ks, protocol.LabelClientFinished, hs.keyTH)
}

// establish derives the traffic keys and, for a new session, stores it:
// only a client that proved the secret gets a resumable session.
func (hs *serverHandshake) establish() error {
	var err error
	hs.seal, hs.open, err = hs.ks.TrafficKeys(hs.suite, hs.keyTH, true)
	if err != nil {
		return err
	}
	hs.exporter = hs.ks.Exporter(hs.io.Transcript.Sum())
	if hs.resumed {
		// The client proved the secret: now the session is extended.
		if err := hs.cfg.sessions.refresh(hs.ctx, hs.sessionID, hs.state); err != nil {
			if errors.Is(err, ephemeral.ErrUnavailable) {
				return fmt.Errorf("server handshake: %w: %w", protocol.CodeUnavailable, err)
			}
			return err
		}
	}
	if !hs.resumed {
		hs.state = sessionState{secret: hs.secret, created: time.Now()}
		if err := hs.cfg.sessions.put(hs.ctx, hs.sessionID, hs.state); err != nil {
			if errors.Is(err, ephemeral.ErrUnavailable) {
				return fmt.Errorf("server handshake: %w: %w", protocol.CodeUnavailable, err)
			}
			return err
		}
	}
	return nil
}
