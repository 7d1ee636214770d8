// Package keyfile loads the server's long-term keys from its data
// directory, creating them on first start: the RSA identity key that signs
// every handshake and the symmetric keys that seal what the server keeps in
// Redis and in the database. New files are written with 0600 permissions,
// completely or not at all, and never overwrite an existing file; an
// existing file that others may read is refused, as SSH refuses a private
// key with open permissions.
package keyfile

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// DefaultRSABits is the size of a new identity key.
const DefaultRSABits = 3072

// ErrRSAKeyRule reports an RSA key, existing or asked for, that breaks the
// protocol's RSA key rule (protocol.CheckRSAPublicKey): clients would
// refuse it.
var ErrRSAKeyRule = errors.New("keyfile: RSA key outside the protocol's rule")

// ErrBadKeyFile reports a key file that exists but cannot be used.
var ErrBadKeyFile = errors.New("keyfile: unusable key file")

// ErrPermissions reports a key file that its group or others may access.
var ErrPermissions = errors.New("keyfile: key file accessible to others")

// readPrivate reads path after checking that only its owner may access it.
func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; run chmod 600 %s", ErrPermissions, path, perm, path)
	}
	return os.ReadFile(path)
}

// LoadOrCreateRSA returns the RSA private key in path (PKCS#8 PEM), creating
// a new one of bits bits there when the file does not exist. created tells
// which happened. bits must be one of protocol.RSAKeySizes (zero means
// DefaultRSABits), and an existing key must follow the protocol's RSA key
// rule; otherwise the error is ErrRSAKeyRule and nothing is written.
func LoadOrCreateRSA(path string, bits int) (key *rsa.PrivateKey, created bool, err error) {
	if bits == 0 {
		bits = DefaultRSABits
	}
	if !protocol.ValidRSAKeySize(bits) {
		return nil, false, fmt.Errorf("%w: %d bits asked for, want one of %v", ErrRSAKeyRule, bits, protocol.RSAKeySizes)
	}
	data, err := readPrivate(path)
	switch {
	case err == nil:
		key, err := parseRSA(data)
		if err != nil {
			return nil, false, fmt.Errorf("keyfile: %s: %w", path, err)
		}
		if err := protocol.CheckRSAPublicKey(&key.PublicKey); err != nil {
			return nil, false, fmt.Errorf("%w: %s holds an RSA key of %d bits with exponent %d; clients accept only %v bits with exponent %d: replace it (a new key is a new fingerprint for clients)",
				ErrRSAKeyRule, path, key.N.BitLen(), key.E, protocol.RSAKeySizes, protocol.RSAExponent)
		}
		return key, false, nil
	case errors.Is(err, ErrPermissions):
		return nil, false, err
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	key, err = rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, false, fmt.Errorf("keyfile: generate RSA-%d: %w", bits, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("keyfile: encode key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

func parseRSA(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("no PKCS#8 PEM block: %w", ErrBadKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", errors.Join(ErrBadKeyFile, err))
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, not RSA: %w", k, ErrBadKeyFile)
	}
	return rk, nil
}

// LoadOrCreateSymmetric returns the 32-byte key in path, creating a random
// one there when the file does not exist.
func LoadOrCreateSymmetric(path string) (key []byte, created bool, err error) {
	data, err := readPrivate(path)
	switch {
	case err == nil:
		if len(data) != 32 {
			return nil, false, fmt.Errorf("keyfile: %s holds %d bytes, want 32: %w", path, len(data), ErrBadKeyFile)
		}
		return data, false, nil
	case errors.Is(err, ErrPermissions):
		return nil, false, err
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("keyfile: random key: %w", err)
	}
	if err := writeNew(path, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// writeNew writes data to path with 0600 permissions through a temporary
// file and a rename, failing if path appeared in the meantime.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keyfile: create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return fmt.Errorf("keyfile: temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keyfile: chmod: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keyfile: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keyfile: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keyfile: close: %w", err)
	}
	// Link fails if path exists, so two starting servers cannot overwrite
	// each other's key.
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("keyfile: install %s: %w", path, err)
	}
	return nil
}
