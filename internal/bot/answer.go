package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// sink is where one answer streams to: a room or a conversation.
type sink interface {
	// event sends a stream event (start, delta, end) with text (a delta's
	// piece) and reason (an end's).
	event(ctx context.Context, event, text, reason string) error
	// final stores the answer as a message linked to the stream.
	final(ctx context.Context, text string) error
}

// sendTimeout bounds one event or the final message.
const sendTimeout = 30 * time.Second

// generate streams the model's answer to prompt into s: a start, deltas
// gathered for Batch, an end with its reason, then the stored answer,
// which says when it was cut, stopped or failed. A stream event that
// fails (a rate limit, say) is dropped; the stored answer still comes.
func (b *Bot) generate(ctx context.Context, g *generation, prompt []llm.Message, s sink) {
	out := context.WithoutCancel(ctx) // what is sent after a stop still goes out
	ectx, cancel := context.WithTimeout(out, sendTimeout)
	_ = s.event(ectx, protocol.StreamStart, "", "")
	cancel()

	var mu sync.Mutex
	var full, pending strings.Builder
	flush := func() {
		mu.Lock()
		text := pending.String()
		pending.Reset()
		mu.Unlock()
		for text != "" {
			piece := fitBody(text)
			if strings.HasSuffix(piece, "…") && len(piece) < len(text) {
				piece = piece[:len(piece)-len("…")]
			}
			text = text[len(piece):]
			ectx, cancel := context.WithTimeout(out, sendTimeout)
			if err := s.event(ectx, protocol.StreamDelta, piece, ""); err != nil {
				b.log.Debug().Err(err).Msg("delta dropped")
			}
			cancel()
		}
	}
	done := make(chan struct{})
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		t := time.NewTicker(b.cfg.Batch)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				flush()
			case <-done:
				return
			}
		}
	}()
	start := time.Now()
	res, err := b.cfg.Model.Stream(ctx, llm.Request{Messages: prompt, MaxTokens: b.cfg.MaxTokens}, func(piece string) error {
		mu.Lock()
		defer mu.Unlock()
		if full.Len()+len(piece) > protocol.MaxBody-256 {
			return errTooLong
		}
		full.WriteString(piece)
		pending.WriteString(piece)
		return nil
	})
	close(done)
	<-flusherDone
	flush()

	answer := strings.TrimSpace(full.String())
	reason := protocol.ReasonDone
	switch {
	case errors.Is(err, errStopped) || errors.Is(context.Cause(ctx), errStopped):
		reason = protocol.ReasonStop
		answer = strings.TrimSpace(answer + "\n\n[" + context.Cause(ctx).Error()[len("bot: "):] + "]")
	case errors.Is(err, errTooLong), err == nil && res.Finish == "length":
		reason = protocol.ReasonLength
		answer += fmt.Sprintf("\n\n[cut: the answer reached the reply-length cap of %d tokens]", b.cfg.MaxTokens)
		err = nil
	case err != nil && ctx.Err() != nil && context.Cause(ctx) == context.Canceled:
		reason = protocol.ReasonStop
		answer = strings.TrimSpace(answer + "\n\n[stopped: the bot is shutting down or lost its connection]")
	case err != nil:
		reason = protocol.ReasonError
		answer = strings.TrimSpace(answer + "\n\n[" + failureText(err) + "]")
	}
	if answer == "" {
		answer = "[the model gave an empty answer]"
	}
	ectx, cancel = context.WithTimeout(out, sendTimeout)
	_ = s.event(ectx, protocol.StreamEnd, "", reason)
	cancel()
	ectx, cancel = context.WithTimeout(out, sendTimeout)
	if ferr := s.final(ectx, answer); ferr != nil {
		b.log.Warn().Err(ferr).Msg("final answer not sent")
	}
	cancel()
	// Timings and counts only: never the prompt or the answer.
	b.log.Info().Str("place", strings.SplitN(g.place, ":", 2)[0]).Dur("took", time.Since(start)).Dur("first_token", res.FirstToken).
		Int("tokens", res.Tokens).Int("prompt_tokens_est", promptTokens(prompt)).Int("attempts", res.Attempts).
		Str("finish", res.Finish).Str("reason", reason).Bool("failed", err != nil && reason == protocol.ReasonError).Msg("answer")
}

// errTooLong ends a stream whose answer would not fit one message.
var errTooLong = errors.New("bot: answer longer than a message")

// failureText tells people in the room what went wrong, without the
// backend's own text (which may quote the prompt).
func failureText(err error) string {
	switch {
	case errors.Is(err, llm.ErrStatus):
		return "sorry, the model's endpoint refused the request (" + strings.TrimPrefix(err.Error(), llm.ErrStatus.Error()+": ") + "); try again later"
	case errors.Is(err, llm.ErrStalled):
		return "sorry, the model stopped sending; try again"
	case errors.Is(err, llm.ErrDeadline):
		return "sorry, the model took too long"
	case errors.Is(err, llm.ErrModel):
		return "sorry, the model reported an error"
	case errors.Is(err, llm.ErrTruncated), errors.Is(err, llm.ErrMalformed):
		return "sorry, the model's answer broke off"
	default:
		return "sorry, the model could not be reached; try again later"
	}
}

func promptTokens(p []llm.Message) int {
	n := 0
	for _, m := range p {
		n += llm.EstimateTokens(m.Content)
	}
	return n
}

// buildPrompt is the system prompt and as many of the turns, newest
// first, as fit budget tokens, in order.
func buildPrompt(system string, turns []llm.Message, budget int) []llm.Message {
	used := 0
	first := len(turns)
	for i := len(turns) - 1; i >= 0; i-- {
		n := llm.EstimateTokens(turns[i].Content) + 4
		if used+n > budget && first < len(turns) {
			break
		}
		used += n
		first = i
	}
	return append([]llm.Message{{Role: "system", Content: system}}, turns[first:]...)
}

// roomSink streams to a room.
type roomSink struct {
	conn   *client.Conn
	room   string
	stream string
	bot    *Bot
}

func (s *roomSink) event(ctx context.Context, event, text, reason string) error {
	_, err := s.conn.Request(ctx, &protocol.Message{Type: protocol.MsgStream, Room: s.room, Stream: s.stream, Event: event, Body: text, Reason: reason})
	return err
}

func (s *roomSink) final(ctx context.Context, text string) error {
	_, err := s.conn.Request(ctx, &protocol.Message{Type: protocol.MsgSend, Room: s.room, Body: fitBody(text), Mid: client.NewMessageID(), Stream: s.stream})
	return err
}

// answerRoom answers m with the room's recent history as context.
func (b *Bot) answerRoom(ctx context.Context, conn *client.Conn, m *protocol.Message, g *generation) {
	q := client.HistoryQuery{Limit: 100}
	if m.Seq > 0 {
		before := m.Seq + 1
		q.Before = &before
	}
	var turns []llm.Message
	if h, err := conn.History(ctx, m.Room, q); err == nil {
		for _, hm := range h.Msgs {
			turns = append(turns, b.turn(hm.From, hm.Body))
		}
	}
	if len(turns) == 0 || m.Seq == 0 {
		turns = append(turns, b.turn(m.From, m.Body))
	}
	b.generate(ctx, g, buildPrompt(b.cfg.SystemPrompt, turns, b.cfg.ContextTokens), &roomSink{conn: conn, room: m.Room, stream: g.stream, bot: b})
}

// turn is one message of the history as the model sees it.
func (b *Bot) turn(from, body string) llm.Message {
	if from == b.cfg.Name {
		return llm.Message{Role: "assistant", Content: body}
	}
	return llm.Message{Role: "user", Content: from + ": " + body}
}
