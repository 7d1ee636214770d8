package client

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// clientHandshake holds everything one client-side handshake needs; its
// handshake method follows docs/protocol.md, "Handshake".
type clientHandshake struct {
	io  *protocol.HandshakeIO
	cfg *Config

	sessionKey *rsa.PrivateKey // per-session, discarded after the handshake
	hello      *protocol.ClientHello
	sh         *protocol.ServerHello
	serverKey  *rsa.PublicKey
	secret     []byte
	ks         *protocol.KeySchedule
	keyTH      []byte

	// Results.
	seal, open *protocol.RecordLayer
	exporter   []byte
	fp         protocol.Fingerprint
}

func (hs *clientHandshake) handshake() error {
	if err := hs.sendClientHello(); err != nil {
		return err
	}
	if err := hs.readServerHello(); err != nil {
		return err
	}
	// The pin check comes once the server has proved it holds the key (its
	// signature, or for a resumption its Finished), and before we answer:
	// a trust-on-first-use verifier never records a key nobody proved.
	if hs.sh.Resumed {
		hs.secret = hs.cfg.Resume.Secret
		if err := hs.startKeySchedule(); err != nil {
			return err
		}
		if err := hs.readServerFinished(); err != nil {
			return err
		}
		if err := hs.checkPin(); err != nil {
			return err
		}
	} else {
		// Nothing from the server is decrypted before the server proved
		// itself: the signature and the pin come before the RSA-OAEP
		// unwrap, so a forger cannot make us run the private-key
		// operation on bytes of his choosing.
		if err := hs.readServerVerify(); err != nil {
			return err
		}
		if err := hs.checkPin(); err != nil {
			return err
		}
		if err := hs.unwrapSecret(); err != nil {
			return err
		}
		if err := hs.startKeySchedule(); err != nil {
			return err
		}
		if err := hs.readServerFinished(); err != nil {
			return err
		}
	}
	if err := hs.sendClientFinished(); err != nil {
		return err
	}
	var err error
	hs.seal, hs.open, err = hs.ks.TrafficKeys(hs.sh.Suite, hs.keyTH, false)
	if err != nil {
		return err
	}
	hs.exporter = hs.ks.Exporter(hs.io.Transcript.Sum())
	hs.sessionKey = nil
	return nil
}

// newSessionKey generates the per-session RSA key a full handshake (or a
// resumption that may fall back to one) sends, or returns nil when the
// handshake only resumes. Dial calls it before connecting, so that the
// server's handshake timeout never waits on key generation.
func newSessionKey(cfg *Config) (*rsa.PrivateKey, error) {
	if cfg.Resume != nil && cfg.ResumeOnly {
		return nil, nil
	}
	if cfg.SessionKey != nil {
		return cfg.SessionKey, nil
	}
	key, err := rsa.GenerateKey(rand.Reader, cfg.SessionKeyBits)
	if err != nil {
		return nil, fmt.Errorf("client handshake: session key: %w", err)
	}
	return key, nil
}

// lastIdentity is the server identity key parsed last: a client dials the
// same server over and over, and parsing and checking the same DER bytes
// each time (x509 and big-number work) gives the same key every time.
var lastIdentity atomic.Pointer[parsedIdentity]

type parsedIdentity struct {
	der []byte
	key *rsa.PublicKey // only read, never changed, once parsed
}

// parseIdentity is protocol.ParseRSAPublicKey, answered from lastIdentity
// when der is byte for byte the key parsed last.
func parseIdentity(der []byte) (*rsa.PublicKey, error) {
	if p := lastIdentity.Load(); p != nil && bytes.Equal(p.der, der) {
		return p.key, nil
	}
	key, err := protocol.ParseRSAPublicKey(der)
	if err != nil {
		return nil, err
	}
	lastIdentity.Store(&parsedIdentity{der: bytes.Clone(der), key: key})
	return key, nil
}

func (hs *clientHandshake) sendClientHello() error {
	h := &protocol.ClientHello{Version: protocol.Version, Suites: hs.cfg.Suites}
	if _, err := rand.Read(h.Random[:]); err != nil {
		return fmt.Errorf("client handshake: random: %w", err)
	}
	if r := hs.cfg.Resume; r != nil {
		h.ResumeID = append([]byte(nil), r.ID[:]...)
	}
	if hs.sessionKey != nil {
		der, err := x509.MarshalPKIXPublicKey(&hs.sessionKey.PublicKey)
		if err != nil {
			return fmt.Errorf("client handshake: session key: %w", err)
		}
		h.SessionKey = der
	}
	hs.hello = h
	return hs.io.Write(h.Marshal())
}

func (hs *clientHandshake) readServerHello() error {
	frame, err := hs.io.Read(protocol.TypeServerHello)
	if err != nil {
		return err
	}
	sh, err := protocol.UnmarshalServerHello(frame)
	if err != nil {
		return err
	}
	hs.sh = sh
	if sh.Version != protocol.Version {
		return fmt.Errorf("client handshake: server speaks version %d: %w", sh.Version, protocol.CodeUnsupportedVersion)
	}
	if !slices.Contains(hs.hello.Suites, sh.Suite) {
		return fmt.Errorf("client handshake: server chose suite %s, not offered: %w", sh.Suite, protocol.CodeNoCommonSuite)
	}
	hs.fp = protocol.FingerprintOf(sh.IdentityKey)
	if hs.serverKey, err = parseIdentity(sh.IdentityKey); err != nil {
		return err
	}
	if sh.Resumed {
		if hs.cfg.Resume == nil || sh.SessionID != hs.cfg.Resume.ID {
			return fmt.Errorf("client handshake: server resumed a session not asked for: %w", protocol.CodeUnexpectedMessage)
		}
	} else if hs.sessionKey == nil {
		return fmt.Errorf("client handshake: server did not resume: %w", protocol.CodeSessionUnknown)
	}
	hs.keyTH = hs.io.Transcript.Sum()
	return nil
}

// readServerVerify checks the server's signature over the transcript up to
// ServerHello (hs.keyTH) with the identity key ServerHello presented.
func (hs *clientHandshake) readServerVerify() error {
	frame, err := hs.io.Read(protocol.TypeServerVerify)
	if err != nil {
		return err
	}
	sv, err := protocol.UnmarshalServerVerify(frame)
	if err != nil {
		return err
	}
	return protocol.VerifyTranscript(hs.serverKey, protocol.ContextServerSignature, hs.keyTH, sv.Signature)
}

// checkPin asks the configured verifier about the identity key's
// fingerprint. A refusal is CodeBadSignature.
func (hs *clientHandshake) checkPin() error {
	if err := hs.cfg.VerifyIdentity(hs.fp); err != nil {
		return fmt.Errorf("client handshake: %w: %w", protocol.CodeBadSignature, err)
	}
	return nil
}

// unwrapSecret decrypts the session secret of a full handshake with the
// session key's private half.
func (hs *clientHandshake) unwrapSecret() error {
	var err error
	hs.secret, err = protocol.UnwrapSecret(hs.sessionKey, hs.sh.WrappedSecret)
	return err
}

// startKeySchedule derives the master key from the session secret.
func (hs *clientHandshake) startKeySchedule() error {
	var err error
	hs.ks, err = protocol.NewKeySchedule(hs.secret)
	return err
}

func (hs *clientHandshake) readServerFinished() error {
	return hs.io.ReadFinished(hs.ks, protocol.LabelServerFinished, hs.keyTH)
}

func (hs *clientHandshake) sendClientFinished() error {
	return hs.io.WriteFinished(hs.ks, protocol.LabelClientFinished, hs.keyTH)
}
