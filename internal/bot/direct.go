package bot

import (
	"context"
	"path/filepath"
	"time"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// maxConvTurns bounds the turns kept in memory per conversation.
const maxConvTurns = 64

// convEvent opens a conversation record (opening the conversation on the
// first one) and answers it. The bot keeps a conversation's recent turns
// in memory for context (its replay guard would refuse records read again
// from history), so after a restart a conversation starts afresh.
func (b *Bot) convEvent(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	cv, err := b.conversation(ctx, conn, m)
	if err != nil {
		b.log.Warn().Err(err).Msg("open conversation failed")
		return
	}
	got, err := cv.Receive(ctx, m)
	if err != nil || got == nil || got.From == b.cfg.Name {
		if err != nil {
			b.log.Warn().Err(err).Msg("record not opened")
		}
		return
	}
	_ = cv.MarkRead(ctx, got.Seq)
	b.mu.Lock()
	log := append(b.convLog[m.Conv], llm.Message{Role: "user", Content: got.Text})
	if len(log) > maxConvTurns {
		log = log[len(log)-maxConvTurns:]
	}
	b.convLog[m.Conv] = log
	turns := append([]llm.Message(nil), log...)
	b.mu.Unlock()
	s := &convSink{conn: conn, cv: cv, bot: b}
	b.start(ctx, got.From, "conv:"+m.Conv, func(gctx context.Context, g *generation) {
		s.stream = g.stream
		b.generate(gctx, g, buildPrompt(b.cfg.SystemPrompt, turns, b.cfg.ContextTokens), s)
	}, func(text string) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		defer cancel()
		_, _, _ = cv.SendText(sctx, text)
	})
}

// conversation returns the open conversation m belongs to, opening it
// with m.From (the other user) the first time.
func (b *Bot) conversation(ctx context.Context, conn *client.Conn, m *protocol.Message) (*client.Conversation, error) {
	b.mu.Lock()
	cv := b.convs[m.Conv]
	b.mu.Unlock()
	if cv != nil {
		return cv, nil
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	peer := m.From
	if peer == b.cfg.Name {
		return nil, context.Canceled // our own key version: nothing to open yet
	}
	cv, err := conn.OpenConversation(octx, b.id, peer, client.ConversationOptions{PinsFile: filepath.Join(b.cfg.Profile, "contacts")})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if prev := b.convs[m.Conv]; prev != nil {
		cv = prev
	} else {
		b.convs[m.Conv] = cv
	}
	b.mu.Unlock()
	return cv, nil
}

// convSink streams to a conversation: each delta and the end's text are
// records sealed under the conversation key, like the final answer.
type convSink struct {
	conn   *client.Conn
	cv     *client.Conversation
	stream string
	bot    *Bot
}

func (s *convSink) event(ctx context.Context, event, text, reason string) error {
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
	sealed, err := s.cv.Seal(ctx, text)
	if err != nil {
		return err
	}
	if _, err := s.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvSend, Conv: s.cv.ID().String(), Record: sealed.Record, Stream: s.stream}); err != nil {
		return err
	}
	s.bot.mu.Lock()
	s.bot.convLog[s.cv.ID().String()] = append(s.bot.convLog[s.cv.ID().String()], llm.Message{Role: "assistant", Content: text})
	s.bot.mu.Unlock()
	return nil
}
