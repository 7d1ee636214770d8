package llm

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// OfflineLabel starts every answer of Offline, so that nobody takes it
// for a model's.
const OfflineLabel = "[offline responder, not a language model]"

// Offline is a deterministic stand-in for a model: it answers with a
// fixed text built from the last user message, labelled OfflineLabel,
// word by word with Delay between words, as a model streams. The same
// prompt always gives the same answer. It needs no network.
type Offline struct {
	// Delay is the pause between two words. Zero means 40 ms.
	Delay time.Duration
}

// Answer returns the full answer Offline gives to messages.
func (o *Offline) Answer(messages []Message) string {
	last := ""
	turns := 0
	for _, m := range messages {
		if m.Role == "user" {
			last, turns = m.Content, turns+1
		}
	}
	words := strings.Fields(last)
	echo := strings.Join(words[:min(len(words), 24)], " ")
	if len(words) > 24 {
		echo += " …"
	}
	return fmt.Sprintf("%s You said: %q. I see %d message(s) of context and %d word(s) in yours. "+
		"Start the bot with -bot-url and -bot-model to talk to a real model.", OfflineLabel, echo, turns, len(words))
}

// Stream streams Answer word by word. MaxTokens counts words: an answer
// cut there ends with Finish "length".
func (o *Offline) Stream(ctx context.Context, req Request, onDelta func(string) error) (Result, error) {
	delay := o.Delay
	if delay <= 0 {
		delay = 40 * time.Millisecond
	}
	start := time.Now()
	words := strings.SplitAfter(o.Answer(req.Messages), " ")
	res := Result{Finish: "stop", Attempts: 1, PromptTokens: 0}
	for _, m := range req.Messages {
		res.PromptTokens += EstimateTokens(m.Content)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for i, w := range words {
		if req.MaxTokens > 0 && i >= req.MaxTokens {
			res.Finish = "length"
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-t.C:
			t.Reset(delay)
		}
		if i == 0 {
			res.FirstToken = time.Since(start)
		}
		res.Tokens++
		if err := onDelta(w); err != nil {
			return res, err
		}
	}
	return res, nil
}
