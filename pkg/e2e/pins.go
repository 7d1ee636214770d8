package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// PinResult is what Pins.Check concludes about a contact's devices.
type PinResult int

// The results.
const (
	// PinTrusted: the devices are the ones pinned.
	PinTrusted PinResult = iota
	// PinNew: the user was not pinned; the devices are pinned now (trust
	// on first use).
	PinNew
	// PinChanged: the devices differ from the pinned ones. Show a loud
	// warning and the user's messages as unverified until the person
	// accepts the change (Accept), ideally after comparing safety numbers.
	PinChanged
)

// String names the result.
func (r PinResult) String() string {
	switch r {
	case PinTrusted:
		return "trusted"
	case PinNew:
		return "new"
	case PinChanged:
		return "CHANGED"
	}
	return fmt.Sprintf("PinResult(%d)", int(r))
}

// PinCheck is the outcome of Pins.Check.
type PinCheck struct {
	Result PinResult
	// Added and Removed list, for PinChanged, the device fingerprints now
	// present that were not pinned and the pinned ones now missing.
	Added, Removed []Fingerprint
}

// Pins remembers, per contact user, the fingerprints of the devices first
// seen (trust on first use), like SSH's known_hosts for servers. The zero
// value is empty and ready; it is safe for concurrent use. Save and
// LoadPins keep it in a file of "user fingerprint" lines.
type Pins struct {
	mu    sync.Mutex
	users map[string]map[Fingerprint]struct{}
}

// Check compares user's devices, as the directory now lists them, with
// the pinned ones. An unpinned user is pinned now (PinNew). Changed
// devices are not pinned until Accept. devices must all belong to user and
// pass Device.Check (else ErrBadDevice or ErrBadKey).
func (p *Pins) Check(user string, devices []Device) (PinCheck, error) {
	now, err := deviceFingerprints(user, devices)
	if err != nil {
		return PinCheck{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pinned, ok := p.users[user]
	if !ok {
		p.set(user, now)
		return PinCheck{Result: PinNew}, nil
	}
	var c PinCheck
	for fp := range now {
		if _, ok := pinned[fp]; !ok {
			c.Added = append(c.Added, fp)
		}
	}
	for fp := range pinned {
		if _, ok := now[fp]; !ok {
			c.Removed = append(c.Removed, fp)
		}
	}
	if len(c.Added) == 0 && len(c.Removed) == 0 {
		return PinCheck{Result: PinTrusted}, nil
	}
	sortFingerprints(c.Added)
	sortFingerprints(c.Removed)
	c.Result = PinChanged
	return c, nil
}

// Accept pins devices as user's devices, replacing what was pinned.
func (p *Pins) Accept(user string, devices []Device) error {
	now, err := deviceFingerprints(user, devices)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set(user, now)
	return nil
}

// Pinned returns the device fingerprints pinned for user, in byte order,
// and whether the user is pinned at all.
func (p *Pins) Pinned(user string) ([]Fingerprint, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set, ok := p.users[user]
	out := make([]Fingerprint, 0, len(set))
	for fp := range set {
		out = append(out, fp)
	}
	sortFingerprints(out)
	return out, ok
}

func (p *Pins) set(user string, fps map[Fingerprint]struct{}) {
	if p.users == nil {
		p.users = map[string]map[Fingerprint]struct{}{}
	}
	p.users[user] = fps
}

func deviceFingerprints(user string, devices []Device) (map[Fingerprint]struct{}, error) {
	if _, err := UserFingerprint(user, devices); err != nil { // checks every device
		return nil, err
	}
	out := make(map[Fingerprint]struct{}, len(devices))
	for _, d := range devices {
		out[d.Fingerprint()] = struct{}{}
	}
	return out, nil
}

func sortFingerprints(fps []Fingerprint) {
	slices.SortFunc(fps, func(a, b Fingerprint) int { return bytes.Compare(a[:], b[:]) })
}

const pinsHeader = "# messenger contact pins: one \"user device-fingerprint\" line per pinned device\n"

// Save writes the pins to path (mode 0600, its directory 0700 if it must
// be created), replacing the file atomically.
func (p *Pins) Save(path string) error {
	p.mu.Lock()
	var b strings.Builder
	b.WriteString(pinsHeader)
	users := make([]string, 0, len(p.users))
	for u := range p.users {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		fps := make([]Fingerprint, 0, len(p.users[u]))
		for fp := range p.users[u] {
			fps = append(fps, fp)
		}
		sortFingerprints(fps)
		for _, fp := range fps {
			fmt.Fprintf(&b, "%s %s\n", u, fp)
		}
	}
	p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".pins-*")
	if err != nil {
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("e2e: save pins: %w", err)
	}
	return nil
}

// LoadPins reads pins Save wrote. A missing file is empty pins; a line
// that is not "user fingerprint" (blank lines and # comments aside) is
// ErrMalformed.
func LoadPins(path string) (*Pins, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Pins{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("e2e: load pins: %w", err)
	}
	p, err := parsePins(data)
	if err != nil {
		return nil, fmt.Errorf("e2e: %s: %w", path, err)
	}
	return p, nil
}

func parsePins(data []byte) (*Pins, error) {
	p := &Pins{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || !protocol.ValidUserName(fields[0]) {
			return nil, fmt.Errorf("line %d: want \"user fingerprint\": %w", n, ErrMalformed)
		}
		fp, err := protocol.ParseFingerprint(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: %w", n, err, ErrMalformed)
		}
		if p.users == nil {
			p.users = map[string]map[Fingerprint]struct{}{}
		}
		if p.users[fields[0]] == nil {
			p.users[fields[0]] = map[Fingerprint]struct{}{}
		}
		p.users[fields[0]][fp] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	return p, nil
}
