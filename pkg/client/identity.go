package client

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Identity is a user's long-term private keys, generated on the client:
// an RSA-PSS signing key and an RSA-OAEP encryption key. The server only
// ever sees their public halves.
type Identity struct {
	User       string
	Signing    *rsa.PrivateKey
	Encryption *rsa.PrivateKey
}

// DefaultIdentityBits is the size of new identity keys.
const DefaultIdentityBits = 3072

// NewIdentity generates keys for user. bits must be one of
// protocol.RSAKeySizes; zero means DefaultIdentityBits.
func NewIdentity(user string, bits int) (*Identity, error) {
	if !protocol.ValidUserName(user) {
		return nil, fmt.Errorf("client: user name %q: lower-case letters, digits, '_', '.', '-', at most %d", user, protocol.MaxUserLen)
	}
	if bits == 0 {
		bits = DefaultIdentityBits
	}
	if !protocol.ValidRSAKeySize(bits) {
		return nil, fmt.Errorf("client: %d-bit keys: the server accepts only %v", bits, protocol.RSAKeySizes)
	}
	s, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("client: signing key: %w", err)
	}
	e, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("client: encryption key: %w", err)
	}
	return &Identity{User: user, Signing: s, Encryption: e}, nil
}

// Bundle returns the self-signed public key bundle to publish.
func (id *Identity) Bundle() (*protocol.KeyBundle, error) {
	return protocol.NewKeyBundle(id.User, id.Signing, &id.Encryption.PublicKey)
}

// Fingerprint returns the user fingerprint of these keys, the value two
// people compare to know they see the same keys.
func (id *Identity) Fingerprint() (protocol.Fingerprint, error) {
	b, err := id.Bundle()
	if err != nil {
		return protocol.Fingerprint{}, err
	}
	return b.Fingerprint(id.User), nil
}

const (
	signingFile    = "signing.pem"
	encryptionFile = "encryption.pem"
)

// Save writes the keys into dir (created 0700) as PKCS#8 PEM files with
// 0600 permissions. It refuses to overwrite existing keys, and on failure
// removes what it wrote, so a profile holds both keys or none.
func (id *Identity) Save(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("client: profile: %w", err)
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	for _, k := range []struct {
		name string
		key  *rsa.PrivateKey
	}{{signingFile, id.Signing}, {encryptionFile, id.Encryption}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return fmt.Errorf("client: profile: %w", err)
		}
		path := filepath.Join(dir, k.name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("client: profile: %w", err)
		}
		written = append(written, path)
		if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			f.Close()
			return fmt.Errorf("client: profile: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("client: profile: %w", err)
		}
	}
	return nil
}

// IdentityFiles are the names of the files Save writes in a profile
// directory: the signing key and the encryption key.
var IdentityFiles = [2]string{signingFile, encryptionFile}

// HasIdentity reports whether dir holds any identity key file.
func HasIdentity(dir string) bool {
	for _, name := range IdentityFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// ErrNoIdentity means a profile directory holds no keys.
var ErrNoIdentity = errors.New("client: no identity keys in profile")

// LoadIdentity reads the keys Save wrote for user from dir.
func LoadIdentity(dir, user string) (*Identity, error) {
	id := &Identity{User: user}
	for name, dst := range map[string]**rsa.PrivateKey{signingFile: &id.Signing, encryptionFile: &id.Encryption} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoIdentity, dir)
		}
		if err != nil {
			return nil, fmt.Errorf("client: profile: %w", err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("client: profile %s: not PEM", name)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client: profile %s: %w", name, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("client: profile %s: not an RSA key", name)
		}
		*dst = rk
	}
	return id, nil
}

// Register creates the account id.User with password and publishes id's
// keys; the connection is then logged in. It first proves to the server
// that it holds the encryption key (a key_challenge). The answer carries
// the user fingerprint and key version.
func (c *Conn) Register(ctx context.Context, id *Identity, password string) (*protocol.Message, error) {
	b, err := id.Bundle()
	if err != nil {
		return nil, err
	}
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return nil, err
	}
	proof, err := c.proveKey(ctx, id.User, id.Encryption, b.Encryption)
	if err != nil {
		return nil, err
	}
	return c.Request(ctx, &protocol.Message{Type: protocol.MsgRegister, User: id.User, Password: password, Keys: b, Sig: sig, Proof: proof})
}

// Login logs in as id.User with password, signing the connection with
// id's keys. With publish set, id's keys replace the published ones (a new
// device or a key reset), after a key_challenge proves that this side
// holds the encryption key: the user's contacts get a key_change event.
func (c *Conn) Login(ctx context.Context, id *Identity, password string, publish bool) (*protocol.Message, error) {
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return nil, err
	}
	m := &protocol.Message{Type: protocol.MsgLogin, User: id.User, Password: password, Sig: sig}
	if publish {
		if m.Keys, err = id.Bundle(); err != nil {
			return nil, err
		}
		if m.Proof, err = c.proveKey(ctx, id.User, id.Encryption, m.Keys.Encryption); err != nil {
			return nil, err
		}
	}
	return c.Request(ctx, m)
}

// proveKey asks the server for a key challenge to the encryption key key
// (der, its PKIX DER as published), opens it, and returns the proof of
// possession that the next register or login with keys must carry on this
// connection for user (docs/protocol.md §10.4).
func (c *Conn) proveKey(ctx context.Context, user string, key *rsa.PrivateKey, der []byte) ([]byte, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgKeyChallenge, Key: der})
	if err != nil {
		return nil, err
	}
	if r.Type != protocol.MsgChallenge {
		return nil, fmt.Errorf("client: key_challenge answered with %q: %w", r.Type, protocol.CodeUnexpectedMessage)
	}
	challenge, err := protocol.OpenKeyChallenge(key, r.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("client: key challenge: %w", err)
	}
	return protocol.KeyPossessionProof(challenge, c.exporter, user, der), nil
}

// Auth authenticates the connection as id.User by its identity signature
// alone: what a registered client does on every new connection.
func (c *Conn) Auth(ctx context.Context, id *Identity) (*protocol.Message, error) {
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return nil, err
	}
	return c.Request(ctx, &protocol.Message{Type: protocol.MsgAuth, User: id.User, Sig: sig})
}

// Contact is a user's published keys as the directory returned them,
// checked on this side.
type Contact struct {
	User        string
	Version     int
	Keys        *protocol.KeyBundle
	Fingerprint protocol.Fingerprint
}

// Lookup fetches user's published keys and checks their self-signature
// and the fingerprint here, without trusting the server's arithmetic. It
// cannot tell whether the server substituted a whole bundle: compare the
// fingerprint with the person, out of band.
func (c *Conn) Lookup(ctx context.Context, user string) (*Contact, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgLookup, User: user})
	if err != nil {
		return nil, err
	}
	if r.User != user {
		return nil, fmt.Errorf("client: lookup %s answered for %s: %w", user, r.User, protocol.CodeUnexpectedMessage)
	}
	if _, err := r.Keys.Verify(user); err != nil {
		return nil, fmt.Errorf("client: keys of %s: %w", user, err)
	}
	fp := r.Keys.Fingerprint(user)
	if r.Fingerprint != fp.String() {
		return nil, fmt.Errorf("client: server's fingerprint for %s disagrees with its keys: %w", user, protocol.CodeBadSignature)
	}
	return &Contact{User: user, Version: r.Version, Keys: r.Keys, Fingerprint: fp}, nil
}
