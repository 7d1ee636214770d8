package bot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-messenger/messenger/pkg/e2e"
)

// What the bot keeps in its profile besides its keys (identity files,
// known_hosts, contacts):
//
//	conversations/conv-<id>-<device>.json  its sender counters per
//	    conversation (pkg/client ConversationOptions.StateDir), so that a
//	    restart goes on under the latest key instead of rotating it;
//	conversations/guard-<id>.json  the replay guard of each conversation
//	    (pkg/e2e ReplayGuard), so that a record replayed after a restart
//	    is refused like one replayed live;
//	rooms.json  the rooms switched with "@bot answer all" / "answer
//	    mentions" while it ran.
//
// What it has answered is not kept here: it is the account's read
// position in each room and conversation, on the server (see catchUp).

// convDir is the directory of the per-conversation files.
func (b *Bot) convDir() string { return filepath.Join(b.cfg.Profile, "conversations") }

func (b *Bot) guardPath(conv string) string {
	return filepath.Join(b.convDir(), "guard-"+conv+".json")
}

// loadGuard returns the conversation's saved replay guard, or an empty
// one when there is none yet.
func (b *Bot) loadGuard(conv string) (*e2e.ReplayGuard, error) {
	g := &e2e.ReplayGuard{}
	data, err := os.ReadFile(b.guardPath(conv))
	if errors.Is(err, os.ErrNotExist) {
		return g, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bot: replay guard: %w", err)
	}
	if err := json.Unmarshal(data, g); err != nil {
		return nil, fmt.Errorf("bot: replay guard of %s: %w", conv, err)
	}
	return g, nil
}

// saveGuard writes the conversation's replay guard.
func (b *Bot) saveGuard(conv string, g *e2e.ReplayGuard) error {
	data, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return writeFile(b.guardPath(conv), data)
}

// roomState is rooms.json.
type roomState struct {
	// AnswerAll holds the rooms switched at run time: true answers every
	// message, false only mentions (overriding Config.AnswerAll).
	AnswerAll map[string]bool `json:"answer_all"`
}

func (b *Bot) roomsPath() string { return filepath.Join(b.cfg.Profile, "rooms.json") }

// loadRooms applies rooms.json, if there is one, over Config.AnswerAll.
func (b *Bot) loadRooms() error {
	data, err := os.ReadFile(b.roomsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bot: rooms state: %w", err)
	}
	var st roomState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("bot: rooms state in %s: %w", b.roomsPath(), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for r, all := range st.AnswerAll {
		b.answerAll[r] = all
		b.switched[r] = all
	}
	return nil
}

// saveRoomsLocked writes the rooms switched at run time; b.mu is held.
func (b *Bot) saveRoomsLocked() error {
	data, err := json.Marshal(roomState{AnswerAll: b.switched})
	if err != nil {
		return err
	}
	return writeFile(b.roomsPath(), data)
}

// writeFile replaces path with data in one rename (0600), making its
// directory (0700) if needed.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("bot: state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("bot: state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bot: state: %w", err)
	}
	return nil
}
