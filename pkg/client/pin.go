package client

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// ErrFingerprintMismatch means the server presented an identity key other
// than the pinned one: either the server's key was replaced or someone is
// in the middle.
var ErrFingerprintMismatch = errors.New("client: server identity key does not match the pinned fingerprint")

// Pin returns a VerifyIdentity function that accepts only want.
func Pin(want protocol.Fingerprint) func(protocol.Fingerprint) error {
	return func(got protocol.Fingerprint) error {
		if got != want {
			return fmt.Errorf("%w: got %s, pinned %s", ErrFingerprintMismatch, got, want)
		}
		return nil
	}
}

// KnownHosts pins server fingerprints in a file, like SSH's known_hosts:
// one "host fingerprint" line per server. The first connection to a host
// records its fingerprint; later ones must present the same.
type KnownHosts struct {
	Path string
	mu   sync.Mutex
}

// Verifier returns a VerifyIdentity function for host. learned is called
// (if not nil) when a new host is recorded.
func (k *KnownHosts) Verifier(host string, learned func(protocol.Fingerprint)) func(protocol.Fingerprint) error {
	return func(got protocol.Fingerprint) error {
		k.mu.Lock()
		defer k.mu.Unlock()
		hosts, err := k.read()
		if err != nil {
			return err
		}
		if want, ok := hosts[host]; ok {
			if want != got {
				return fmt.Errorf("%w: %s presented %s, %s has %s; if the server's key really changed, remove that line",
					ErrFingerprintMismatch, host, got, k.Path, want)
			}
			return nil
		}
		if err := k.append(host, got); err != nil {
			return err
		}
		if learned != nil {
			learned(got)
		}
		return nil
	}
}

// Lookup returns the pinned fingerprint of host, if any.
func (k *KnownHosts) Lookup(host string) (protocol.Fingerprint, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	hosts, err := k.read()
	if err != nil {
		return protocol.Fingerprint{}, false, err
	}
	fp, ok := hosts[host]
	return fp, ok, nil
}

func (k *KnownHosts) read() (map[string]protocol.Fingerprint, error) {
	out := map[string]protocol.Fingerprint{}
	f, err := os.Open(k.Path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: known hosts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("client: %s:%d: want \"host fingerprint\"", k.Path, n)
		}
		fp, err := protocol.ParseFingerprint(fields[1])
		if err != nil {
			return nil, fmt.Errorf("client: %s:%d: %w", k.Path, n, err)
		}
		out[fields[0]] = fp
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("client: known hosts: %w", err)
	}
	return out, nil
}

func (k *KnownHosts) append(host string, fp protocol.Fingerprint) error {
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return fmt.Errorf("client: known hosts: %w", err)
	}
	f, err := os.OpenFile(k.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("client: known hosts: %w", err)
	}
	if _, err := fmt.Fprintf(f, "%s %s\n", host, fp); err != nil {
		f.Close()
		return fmt.Errorf("client: known hosts: %w", err)
	}
	return f.Close()
}
