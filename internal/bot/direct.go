package bot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// convContext is how many of a conversation's stored records, up to the
// one answered, are read back as the answer's context (then cut to
// Config.ContextTokens).
const convContext = 50

// convEvent takes in a conversation event (on the conversation's intake
// lane): a new key version is added; a record from the other user is
// opened with the replay guard (saved in the profile after each) and
// queued for an answer.
func (b *Bot) convEvent(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	if m.From == b.cfg.Name {
		return // another device of the bot's account, or its own key version
	}
	cv, err := b.conversation(ctx, conn, m.Conv, m.From)
	if err != nil {
		b.log.Warn().Err(err).Msg("open conversation failed")
		return
	}
	got, err := b.receive(ctx, cv, m)
	if err != nil || got == nil || got.From == b.cfg.Name {
		if err != nil {
			b.log.Warn().Err(err).Msg("record not opened")
		}
		return
	}
	if !b.take("conv:"+m.Conv, got.Seq) {
		return
	}
	b.answerConv(ctx, conn, cv, got)
}

// receive opens a record with the conversation's replay guard and saves
// the guard when it accepted one.
func (b *Bot) receive(ctx context.Context, cv *client.Conversation, m *protocol.Message) (*client.Received, error) {
	rctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	got, err := cv.Receive(rctx, m)
	if got != nil {
		b.mu.Lock()
		g := b.guards[m.Conv]
		b.mu.Unlock()
		if serr := b.saveGuard(m.Conv, g); serr != nil {
			b.log.Warn().Err(serr).Msg("replay guard not saved")
		}
	}
	return got, err
}

// catchUpConv answers what the other user sent while the bot was away:
// the records after the account's read position. Those sent after the
// bot's own last record there are answered together, in one answer
// (with the others as context); the read position then moves past them.
// A record the replay guard already accepted (the bot took it in but did
// not answer before it stopped) is opened without the guard, since it
// is after the read position.
func (b *Bot) catchUpConv(ctx context.Context, conn *client.Conn, pos protocol.ConvPosition) {
	if pos.User == "" || pos.User == b.cfg.Name {
		return
	}
	cv, err := b.conversation(ctx, conn, pos.Conv, pos.User)
	if err != nil {
		b.log.Warn().Err(err).Msg("open conversation failed")
		return
	}
	var last *client.Received // the newest unanswered record of the other user
	after := max(pos.Read, pos.Head-maxCatchUp)
	for range maxCatchUp / 50 {
		hctx, cancel := context.WithTimeout(ctx, sendTimeout)
		a := after
		r, err := conn.Request(hctx, &protocol.Message{Type: protocol.MsgConvHistory, Conv: pos.Conv, After: &a, Limit: 50})
		cancel()
		if err != nil {
			b.log.Warn().Err(err).Msg("conversation catch-up failed")
			return
		}
		for _, m := range r.Msgs {
			after = max(after, m.Seq)
			var got *client.Received
			var err error
			if m.From != b.cfg.Name {
				got, err = b.receive(ctx, cv, m)
			}
			if got == nil && (err == nil || errors.Is(err, e2e.ErrStaleCounter)) {
				got, err = cv.Peek(ctx, m) // its own, or taken in before
			}
			if err != nil {
				b.log.Warn().Err(err).Msg("record not opened")
				continue
			}
			if got.From == b.cfg.Name {
				last = nil // answered up to here
			} else {
				last = got
			}
		}
		if !r.More || len(r.Msgs) == 0 {
			break
		}
	}
	if last == nil {
		if after > pos.Read { // all answered: the read position catches up
			rctx, cancel := context.WithTimeout(ctx, sendTimeout)
			defer cancel()
			_ = cv.MarkRead(rctx, after)
		}
		return
	}
	if !b.take("conv:"+pos.Conv, after) {
		return
	}
	last.Seq = after
	b.answerConv(ctx, conn, cv, last)
}

// answerConv queues an answer to got, with the conversation's stored
// records up to it as context; the read position then moves to it.
func (b *Bot) answerConv(ctx context.Context, conn *client.Conn, cv *client.Conversation, got *client.Received) {
	s := &convSink{conn: conn, cv: cv, mu: b.sendLock(cv.ID().String())}
	b.enqueue(ctx, got.From, "conv:"+cv.ID().String(), func(gctx context.Context, g *generation) {
		s.stream = g.stream
		b.generate(gctx, g, buildPrompt(b.cfg.SystemPrompt, b.convTurns(gctx, cv, got), b.cfg.ContextTokens), s)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		defer cancel()
		if err := cv.MarkRead(rctx, got.Seq); err != nil {
			b.log.Warn().Err(err).Msg("read position not moved")
		}
	}, func(text string) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		defer cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		_, _, _ = cv.SendText(sctx, text)
	})
}

// convTurns reads back the conversation's last stored records up to
// got (opened for context: records seen before are not replays here),
// both sides, oldest first; got alone if the history cannot be read.
func (b *Bot) convTurns(ctx context.Context, cv *client.Conversation, got *client.Received) []llm.Message {
	before := got.Seq + 1
	hctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	recs, _, err := cv.History(hctx, client.HistoryQuery{Before: &before, Limit: convContext})
	if err != nil {
		b.log.Debug().Err(err).Msg("conversation history incomplete")
	}
	var turns []llm.Message
	found := false
	for _, r := range recs {
		found = found || r.MessageID == got.MessageID || r.Seq == got.Seq
		if r.From == b.cfg.Name {
			turns = append(turns, llm.Message{Role: "assistant", Content: r.Text})
		} else {
			turns = append(turns, llm.Message{Role: "user", Content: r.Text})
		}
	}
	if !found {
		turns = append(turns, llm.Message{Role: "user", Content: got.Text})
	}
	return turns
}

// conversation returns the open conversation conv with peer, opening it
// the first time on this connection, with the counters and replay guard
// saved in the profile.
func (b *Bot) conversation(ctx context.Context, conn *client.Conn, conv, peer string) (*client.Conversation, error) {
	b.mu.Lock()
	cv := b.convs[conv]
	guard := b.guards[conv]
	id := b.id
	b.mu.Unlock()
	if cv != nil {
		return cv, nil
	}
	if guard == nil {
		g, err := b.loadGuard(conv)
		if err != nil {
			return nil, err
		}
		guard = g
	}
	if err := os.MkdirAll(b.convDir(), 0o700); err != nil {
		return nil, fmt.Errorf("bot: state: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cv, err := conn.OpenConversation(octx, id, peer, client.ConversationOptions{
		PinsFile: filepath.Join(b.cfg.Profile, "contacts"), Guard: guard, StateDir: b.convDir(),
	})
	if err != nil {
		return nil, err
	}
	if cv.ID().String() != conv {
		return nil, errors.New("bot: the conversation with " + peer + " is not " + conv)
	}
	b.mu.Lock()
	b.convs[conv], b.guards[conv] = cv, guard
	b.mu.Unlock()
	return cv, nil
}

// convSink streams to a conversation: each delta and the end's text are
// records sealed under the conversation key, like the final answer.
type convSink struct {
	conn   *client.Conn
	cv     *client.Conversation
	stream string
	// mu is held from a seal to its send, so that records leave in
	// counter order (e2e.md §6: a record sent after a higher counter
	// is refused as stale), refusals included.
	mu *sync.Mutex
}

// sendLock returns the lock that orders conv's outgoing records.
func (b *Bot) sendLock(conv string) *sync.Mutex {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.sendLocks[conv]
	if l == nil {
		l = &sync.Mutex{}
		b.sendLocks[conv] = l
	}
	return l
}

func (s *convSink) event(ctx context.Context, event, text, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &protocol.Message{Type: protocol.MsgConvStream, Conv: s.cv.ID().String(), Stream: s.stream, Event: event, Reason: reason}
	if text != "" {
		sealed, err := s.cv.Seal(ctx, text)
		if err != nil {
			return err
		}
		m.Record = sealed.Record
	}
	_, err := s.conn.Request(ctx, m)
	return err
}

func (s *convSink) final(ctx context.Context, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sealed, err := s.cv.Seal(ctx, text)
	if err != nil {
		return err
	}
	_, err = s.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvSend, Conv: s.cv.ID().String(), Record: sealed.Record, Stream: s.stream})
	return err
}
