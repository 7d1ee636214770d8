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
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Identity is one device of a user: its id and its long-term private
// keys, generated on the client: an RSA-PSS signing key and an RSA-OAEP
// encryption key. The server only ever sees their public halves.
type Identity struct {
	User string
	// Device is the device's id, chosen by NewIdentity. A profile saved
	// before devices existed has none (uuid.Nil) until the server names
	// it: Auth and Login fill it in from the authed answer, and the
	// caller keeps it with SaveDevice.
	Device     uuid.UUID
	Signing    *rsa.PrivateKey
	Encryption *rsa.PrivateKey
	// DeviceName is the label Register and Login (with publish) give the
	// device; it is not saved.
	DeviceName string
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
	return &Identity{User: user, Device: uuid.New(), Signing: s, Encryption: e}, nil
}

// ErrNoDeviceID means an identity has no device id yet (a profile saved
// before devices existed, not yet logged in with Auth).
var ErrNoDeviceID = errors.New("client: identity has no device id yet")

// Bundle returns the self-signed key bundle of this device, to publish.
func (id *Identity) Bundle() (*protocol.KeyBundle, error) {
	if id.Device == uuid.Nil {
		return nil, ErrNoDeviceID
	}
	return protocol.NewDeviceBundle(id.User, id.Device, id.Signing, &id.Encryption.PublicKey)
}

// Public returns this device as pkg/e2e sees it.
func (id *Identity) Public() (e2e.Device, error) {
	if id.Device == uuid.Nil {
		return e2e.Device{}, ErrNoDeviceID
	}
	l := &e2e.LocalDevice{User: id.User, ID: id.Device, Signing: id.Signing, Encryption: id.Encryption}
	return l.Public()
}

// Fingerprint returns the device fingerprint of this device
// (protocol.DeviceFingerprint), what the authed answer carries.
func (id *Identity) Fingerprint() (protocol.Fingerprint, error) {
	d, err := id.Public()
	if err != nil {
		return protocol.Fingerprint{}, err
	}
	return d.Fingerprint(), nil
}

const (
	signingFile    = "signing.pem"
	encryptionFile = "encryption.pem"
	deviceFile     = "device"
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
	if id.Device != uuid.Nil {
		written = append(written, filepath.Join(dir, deviceFile))
		if err := id.SaveDevice(dir); err != nil {
			return err
		}
	}
	return nil
}

// SaveDevice writes the device id into dir (0600), unless the file is
// there already: a device id never changes.
func (id *Identity) SaveDevice(dir string) error {
	if id.Device == uuid.Nil {
		return ErrNoDeviceID
	}
	f, err := os.OpenFile(filepath.Join(dir, deviceFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("client: profile: %w", err)
	}
	if _, err := f.WriteString(id.Device.String() + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("client: profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("client: profile: %w", err)
	}
	return nil
}

// IdentityFiles are the names of the files Save writes in a profile
// directory: the signing key, the encryption key and the device id (absent
// from a profile saved before devices existed).
var IdentityFiles = [3]string{signingFile, encryptionFile, deviceFile}

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
	switch data, err := os.ReadFile(filepath.Join(dir, deviceFile)); {
	case errors.Is(err, os.ErrNotExist):
		// Saved before devices existed: Auth learns the id.
	case err != nil:
		return nil, fmt.Errorf("client: profile: %w", err)
	default:
		d, err := protocol.ParseDeviceID(strings.TrimSpace(string(data)))
		if err != nil {
			return nil, fmt.Errorf("client: profile %s: %w", deviceFile, err)
		}
		id.Device = d
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
	return c.Request(ctx, &protocol.Message{Type: protocol.MsgRegister, User: id.User, Password: password, Keys: b, DeviceName: id.DeviceName, Sig: sig, Proof: proof})
}

// Login logs in as id.User with password, signing the connection with
// id's keys. With publish set, id becomes a new device of the user, after
// a key_challenge proves that this side holds the encryption key: the
// user's contacts and other devices get a key_change event. The user's
// other devices stay.
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
		m.DeviceName = id.DeviceName
		if m.Proof, err = c.proveKey(ctx, id.User, id.Encryption, m.Keys.Encryption); err != nil {
			return nil, err
		}
	} else if id.Device != uuid.Nil {
		m.Device = id.Device.String()
	}
	return id.learnDevice(c.Request(ctx, m))
}

// learnDevice takes the device id of an identity saved before devices
// existed from the authed answer r.
func (id *Identity) learnDevice(r *protocol.Message, err error) (*protocol.Message, error) {
	if err != nil || id.Device != uuid.Nil {
		return r, err
	}
	d, perr := protocol.ParseDeviceID(r.Device)
	if perr != nil {
		return r, fmt.Errorf("client: authed without a device id: %w", protocol.CodeUnexpectedMessage)
	}
	id.Device = d
	return r, nil
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
	m := &protocol.Message{Type: protocol.MsgAuth, User: id.User, Sig: sig}
	if id.Device != uuid.Nil {
		m.Device = id.Device.String()
	}
	return id.learnDevice(c.Request(ctx, m))
}

// Contact is a user's current devices as the directory returned them,
// checked on this side.
type Contact struct {
	User    string
	Devices []ContactDevice
	// Fingerprint is the user fingerprint over all of Devices
	// (e2e.UserFingerprint), computed here.
	Fingerprint protocol.Fingerprint
}

// ContactDevice is one device of a Contact.
type ContactDevice struct {
	e2e.Device
	Name    string
	Keys    *protocol.KeyBundle
	Created time.Time
	// Fingerprint is the device fingerprint, computed here.
	Fingerprint protocol.Fingerprint
}

// Lookup fetches user's current devices and checks each one's
// self-signature and fingerprint, and the user fingerprint, here, without
// trusting the server's arithmetic. It cannot tell whether the server
// substituted or hid a whole device: compare the fingerprint with the
// person, out of band.
func (c *Conn) Lookup(ctx context.Context, user string) (*Contact, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgLookup, User: user})
	if err != nil {
		return nil, err
	}
	return checkDirectory(user, r)
}

// Devices lists this connection's user's current devices (id.User's), and
// returns the id of the device this connection logged in with (also after
// a resumption; uuid.Nil only for a session sealed by a server from before
// session records named the device).
func (c *Conn) Devices(ctx context.Context, id *Identity) (*Contact, uuid.UUID, error) {
	r, err := c.Request(ctx, &protocol.Message{Type: protocol.MsgDevices})
	if err != nil {
		return nil, uuid.Nil, err
	}
	ct, err := checkDirectory(id.User, r)
	if err != nil {
		return nil, uuid.Nil, err
	}
	this, _ := protocol.ParseDeviceID(r.Device)
	return ct, this, nil
}

// RemoveDevice removes device, one of id.User's other devices, signing
// the request with id's keys. The removed device's sessions are revoked
// on every node and its tickets no longer resume; the user's other
// devices stay signed in.
func (c *Conn) RemoveDevice(ctx context.Context, id *Identity, device uuid.UUID) error {
	sig, err := protocol.SignClientAuth(id.Signing, c.exporter, id.User)
	if err != nil {
		return err
	}
	_, err = c.Request(ctx, &protocol.Message{Type: protocol.MsgRemoveDevice, User: id.User, Device: device.String(), Sig: sig})
	return err
}

// checkDirectory checks a keys answer for user.
func checkDirectory(user string, r *protocol.Message) (*Contact, error) {
	if r.Type != protocol.MsgKeys || r.User != user {
		return nil, fmt.Errorf("client: devices of %s answered with %q for %q: %w", user, r.Type, r.User, protocol.CodeUnexpectedMessage)
	}
	if len(r.Devices) == 0 || len(r.Devices) > e2e.MaxRecipients {
		return nil, fmt.Errorf("client: %s has %d devices: %w", user, len(r.Devices), protocol.CodeUnexpectedMessage)
	}
	ct := &Contact{User: user}
	devs := make([]e2e.Device, 0, len(r.Devices))
	for _, info := range r.Devices {
		if _, _, err := info.Keys.VerifyListed(user); err != nil {
			return nil, fmt.Errorf("client: a device of %s: %w", user, err)
		}
		id, _ := protocol.ParseDeviceID(info.Keys.Device)
		d := e2e.Device{User: user, ID: id, Signing: info.Keys.Signing, Encryption: info.Keys.Encryption}
		fp := d.Fingerprint()
		if info.Fingerprint != fp.String() {
			return nil, fmt.Errorf("client: server's fingerprint for device %s of %s disagrees with its keys: %w", id, user, protocol.CodeBadSignature)
		}
		ct.Devices = append(ct.Devices, ContactDevice{Device: d, Name: info.Name, Keys: info.Keys, Created: time.UnixMilli(info.Created).UTC(), Fingerprint: fp})
		devs = append(devs, d)
	}
	fp, err := e2e.UserFingerprint(user, devs)
	if err != nil {
		return nil, fmt.Errorf("client: devices of %s: %w", user, err)
	}
	if r.Fingerprint != fp.String() {
		return nil, fmt.Errorf("client: server's fingerprint for %s disagrees with its devices: %w", user, protocol.CodeBadSignature)
	}
	ct.Fingerprint = fp
	return ct, nil
}
