// Package retention decides how much history the server keeps and has
// the store enforce it: a default policy for every stream, overrides per
// room and one for all direct conversations, and a pruner that runs the
// store's PruneAll with them periodically.
//
// Overrides are written as the operator gives them (the server's
// -retention flag):
//
//	ROOM=AGE,COUNT;ROOM=AGE;ROOM=,COUNT;ROOM=keep;@conversations=AGE,COUNT
//
// AGE is a Go duration ("720h", "90m") or a number of days ("30d"), COUNT
// a number of messages; 0, an empty part or "keep" means no limit on that
// part. ROOM is a room name (case-insensitive); "@conversations" stands
// for every direct conversation. An override replaces the default whole:
// "lobby=30d" keeps lobby's messages for 30 days however many there are,
// even when the default has a count.
package retention

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/store"
)

// Conversations is the override key that stands for every direct
// conversation.
const Conversations = "@conversations"

// Rules are the retention policies of every stream. The zero value keeps
// everything.
type Rules struct {
	// Default applies to every stream without an override.
	Default store.RetentionPolicy
	// Rooms are the overrides by room stream ("room:<name>", canonical).
	Rooms map[string]store.RetentionPolicy
	// Conversations, if set, applies to every direct conversation.
	Conversations *store.RetentionPolicy
}

// Policy returns the policy of the stream (a canonical stream name).
func (r Rules) Policy(stream string) store.RetentionPolicy {
	if store.IsConversationStream(stream) {
		if r.Conversations != nil {
			return *r.Conversations
		}
		return r.Default
	}
	if p, ok := r.Rooms[stream]; ok {
		return p
	}
	return r.Default
}

// KeepsEverything reports whether no policy removes anything, so that the
// pruner need not run.
func (r Rules) KeepsEverything() bool {
	if r.Default != (store.RetentionPolicy{}) {
		return false
	}
	if r.Conversations != nil && *r.Conversations != (store.RetentionPolicy{}) {
		return false
	}
	for _, p := range r.Rooms {
		if p != (store.RetentionPolicy{}) {
			return false
		}
	}
	return true
}

// ParseAge parses a maximum age: a Go duration or a number of days ("30d");
// "", "0" and "keep" are 0 (no limit). Negative ages are refused.
func ParseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "0", "keep":
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("age %q: want a number of days up to 36500, like 30d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("age %q: want a duration like 30d or 720h", s)
	}
	return d, nil
}

// parseCount parses a maximum count: "", "0" and "keep" are 0 (no limit).
func parseCount(s string) (int, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "keep":
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("count %q: want a number of messages, 0 for no limit", s)
	}
	return int(n), nil
}

// ParseOverrides parses the overrides (see the package comment) into
// rules with def as the default. An empty spec has no overrides. Every
// error names the entry at fault.
func ParseOverrides(spec string, def store.RetentionPolicy) (Rules, error) {
	r := Rules{Default: def, Rooms: map[string]store.RetentionPolicy{}}
	for _, entry := range strings.Split(spec, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, value, ok := strings.Cut(entry, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return Rules{}, fmt.Errorf("retention %q: want ROOM=AGE,COUNT", entry)
		}
		var p store.RetentionPolicy
		ageText, countText, _ := strings.Cut(value, ",")
		var err error
		if p.MaxAge, err = ParseAge(ageText); err != nil {
			return Rules{}, fmt.Errorf("retention %q: %w", entry, err)
		}
		if p.MaxCount, err = parseCount(countText); err != nil {
			return Rules{}, fmt.Errorf("retention %q: %w", entry, err)
		}
		if name == Conversations {
			if r.Conversations != nil {
				return Rules{}, fmt.Errorf("retention %q: %s given twice", entry, Conversations)
			}
			r.Conversations = &p
			continue
		}
		stream, err := store.CanonicalStream(store.RoomStream(name))
		if err != nil {
			return Rules{}, fmt.Errorf("retention %q: room name: %w", entry, err)
		}
		if _, dup := r.Rooms[stream]; dup {
			return Rules{}, fmt.Errorf("retention %q: room %s given twice", entry, name)
		}
		r.Rooms[stream] = p
	}
	return r, nil
}

// Pruner is what Run needs of the store.
type Pruner interface {
	// PruneAll is store.HistoryStore's.
	PruneAll(ctx context.Context, policy func(stream string) store.RetentionPolicy) (int, error)
}

// Run prunes every stream by rules at once and then every interval, until
// ctx ends; it returns then. A failed pass is logged and retried at the
// next interval. With rules that keep everything it returns at once.
func Run(ctx context.Context, s Pruner, rules Rules, interval time.Duration, log zerolog.Logger) {
	if rules.KeepsEverything() || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.PruneAll(ctx, rules.Policy)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn().Err(err).Int("deleted", n).Msg("retention: prune failed; retrying at the next interval")
		case n > 0:
			log.Info().Int("deleted", n).Msg("retention: pruned old messages")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
