package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/google/uuid"
)

// counterFile is where a conversation's sender counters of this device
// are kept (ConversationOptions.StateDir): the last counter used under
// each key version, so that a new session goes on counting under the
// latest key instead of rotating it (it cannot otherwise know which
// counters it already used).
//
// Once the file exists it records every counter this device used in the
// conversation since (a record is only handed out after its counter is
// saved), so a key version missing from it is one this device never
// sealed under: the device counts from 1 under a key another device
// made, instead of rotating it. Key versions older than the file cannot
// become the latest again.
type counterFile struct {
	path   string
	exists bool // the file was found or written: it accounts for every later key version
}

func newCounterFile(dir string, conv, device uuid.UUID) *counterFile {
	if dir == "" {
		return nil
	}
	return &counterFile{path: filepath.Join(dir, "conv-"+conv.String()+"-"+device.String()+".json")}
}

// counterState is the file's JSON: key version (decimal) → last counter.
type counterState struct {
	Counters map[string]uint64 `json:"counters"`
}

// load returns the saved counters; none when there is no file yet.
func (f *counterFile) load() (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	if f == nil {
		return out, nil
	}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: counters: %w", err)
	}
	f.exists = true
	var st counterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("client: counters in %s: %w", f.path, err)
	}
	for k, v := range st.Counters {
		n, err := strconv.ParseUint(k, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("client: counters in %s: key version %q", f.path, k)
		}
		out[uint32(n)] = v
	}
	return out, nil
}

// save writes counters, replacing the file in one rename (0600).
func (f *counterFile) save(counters map[uint32]uint64) error {
	if f == nil {
		return nil
	}
	st := counterState{Counters: make(map[string]uint64, len(counters))}
	for k, v := range counters {
		st.Counters[strconv.FormatUint(uint64(k), 10)] = v
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("client: save counters: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("client: save counters: %w", err)
	}
	f.exists = true
	return nil
}

// complete reports whether the file accounts for every counter this
// device used under any key version that can still be the latest.
func (f *counterFile) complete() bool { return f != nil && f.exists }
