package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors a stream can end with; each is wrapped with detail.
var (
	// ErrStatus: the endpoint answered with an HTTP error status.
	ErrStatus = errors.New("llm: endpoint refused the request")
	// ErrMalformed: the event stream or a chunk in it does not parse.
	ErrMalformed = errors.New("llm: malformed stream")
	// ErrStalled: no byte arrived within Client.IdleTimeout.
	ErrStalled = errors.New("llm: the model stopped sending")
	// ErrTruncated: the stream ended without [DONE] or a finish reason.
	ErrTruncated = errors.New("llm: stream ended early")
	// ErrModel: the endpoint reported an error inside the stream.
	ErrModel = errors.New("llm: model error")
	// ErrDeadline: the whole request took longer than Client.Timeout.
	ErrDeadline = errors.New("llm: request deadline passed")
)

// Message is one chat message of a prompt.
type Message struct {
	// Role is "system", "user" or "assistant".
	Role string `json:"role"`
	// Content is the text.
	Content string `json:"content"`
}

// Request is one generation.
type Request struct {
	// Messages are the prompt, oldest first.
	Messages []Message
	// MaxTokens caps the answer (0: the backend's default); a capped
	// answer ends with Finish "length".
	MaxTokens int
}

// Result describes a finished generation.
type Result struct {
	// Finish is the finish reason: "stop", "length" (cut at MaxTokens),
	// or what else the backend said; "" if it said nothing.
	Finish string
	// Tokens counts the deltas received (the usage the backend reports,
	// when it does).
	Tokens int
	// PromptTokens is the prompt's size as the backend reports it (0 if
	// it does not).
	PromptTokens int
	// Attempts is how many requests it took (retries + 1).
	Attempts int
	// FirstToken is the time from the start to the first delta.
	FirstToken time.Duration
}

// Client streams chat completions from an OpenAI-compatible endpoint.
// The zero value is not usable: set URL and Model.
type Client struct {
	// URL is the API base, e.g. http://127.0.0.1:11434/v1; the client
	// posts to URL + "/chat/completions".
	URL string
	// Model is the model name sent in each request.
	Model string
	// APIKey, if set, is sent as a bearer token. Never logged.
	APIKey string
	// HTTP is the client used; nil means a client without timeout (the
	// deadline and the watchdog below bound each request).
	HTTP *http.Client
	// Timeout bounds one whole generation, retries included. Zero means
	// 5 minutes.
	Timeout time.Duration
	// IdleTimeout bounds the wait for the response and the gap between
	// two lines of the stream, so a long answer is not cut but a stalled
	// one is. Zero means 60 seconds.
	IdleTimeout time.Duration
	// Retries is how often a request refused with 429 or a 5xx status
	// (or that failed before its first delta) is tried again. Zero means
	// 2; negative means none.
	Retries int
	// Backoff is the first wait between tries, doubled each time (with
	// jitter) unless the endpoint's Retry-After says otherwise. Zero
	// means 500 ms.
	Backoff time.Duration
	// MaxRetryWait caps one wait, Retry-After included. Zero means 30 s.
	MaxRetryWait time.Duration
	// Temperature, if not nil, is sent as the temperature option.
	Temperature *float64
}

func (c *Client) settings() (timeout, idle time.Duration, retries int, backoff, maxWait time.Duration) {
	timeout, idle, retries, backoff, maxWait = c.Timeout, c.IdleTimeout, c.Retries, c.Backoff, c.MaxRetryWait
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	if idle <= 0 {
		idle = 60 * time.Second
	}
	if retries == 0 {
		retries = 2
	}
	if retries < 0 {
		retries = 0
	}
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 30 * time.Second
	}
	return
}

// chatRequest is the body posted to /chat/completions.
type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	Stream        bool           `json:"stream"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float64       `json:"temperature,omitempty"`
	StreamOptions map[string]any `json:"stream_options,omitempty"`
}

// chatChunk is one streamed chunk (the fields used).
type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// retryable marks a failure worth another try (before the first delta).
type retryable struct {
	err   error
	after time.Duration // the endpoint's Retry-After; 0 if none
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// Stream runs one generation, calling onDelta with each piece of the
// answer as it arrives (an error from onDelta ends the stream with that
// error). It retries a refused or failed request only until the first
// delta; after it, a failure ends the stream. Cancelling ctx ends it at
// once with ctx's error.
func (c *Client) Stream(ctx context.Context, req Request, onDelta func(string) error) (Result, error) {
	timeout, idle, retries, backoff, maxWait := c.settings()
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrDeadline)
	defer cancel()
	var res Result
	for attempt := 0; ; attempt++ {
		res.Attempts = attempt + 1
		err := c.try(ctx, req, idle, start, &res, onDelta)
		var re *retryable
		if err == nil || !errors.As(err, &re) || attempt >= retries || res.Tokens > 0 {
			if re != nil {
				err = re.err
			}
			return res, err
		}
		wait := re.after
		if wait <= 0 {
			wait = backoff << attempt
			wait += rand.N(wait/2 + 1) // jitter
		}
		wait = min(wait, maxWait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return res, c.ctxErr(ctx)
		}
	}
}

// ctxErr is ctx's cause: ErrDeadline, ErrStalled, or the caller's error.
func (c *Client) ctxErr(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return ctx.Err()
}

// try makes one request and reads its stream.
func (c *Client) try(parent context.Context, req Request, idle time.Duration, start time.Time, res *Result, onDelta func(string) error) error {
	body, err := json.Marshal(chatRequest{
		Model: c.Model, Messages: req.Messages, Stream: true, MaxTokens: req.MaxTokens, Temperature: c.Temperature,
		StreamOptions: map[string]any{"include_usage": true},
	})
	if err != nil {
		return fmt.Errorf("llm: encode request: %w", err)
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	// The watchdog: reset on every line; firing cancels the request.
	watchdog := time.AfterFunc(idle, func() { cancel(fmt.Errorf("%w for %s", ErrStalled, idle)) })
	defer watchdog.Stop()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.URL, "/")+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("llm: request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "text/event-stream")
	if c.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			err = c.ctxErr(ctx)
			if parent.Err() != nil {
				return err // cancelled or past the deadline: no retry
			}
		}
		return &retryable{err: fmt.Errorf("llm: request: %w", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The error text may echo the prompt: only the status is kept.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		err := fmt.Errorf("%w: HTTP %d", ErrStatus, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return &retryable{err: err, after: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
		}
		return err
	}
	sse := newSSEReader(resp.Body, func() { watchdog.Reset(idle) })
	finished := false
	for {
		data, err := sse.next()
		if err != nil {
			if ctx.Err() != nil {
				err = c.ctxErr(ctx)
			}
			if errors.Is(err, io.EOF) {
				if finished {
					return nil // a finish reason, but no [DONE]: done all the same
				}
				err = ErrTruncated
			}
			if res.Tokens == 0 && !errors.Is(err, ErrMalformed) && parent.Err() == nil && !errors.Is(err, ErrStalled) {
				return &retryable{err: err}
			}
			return err
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			return nil
		}
		if data == "" {
			continue
		}
		var ch chatChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return fmt.Errorf("%w: a data line is not a JSON chunk", ErrMalformed)
		}
		if ch.Error != nil {
			// The message may quote the prompt; it goes to the caller,
			// which must not log it either.
			return fmt.Errorf("%w: %s", ErrModel, ch.Error.Message)
		}
		if ch.Usage != nil {
			res.PromptTokens = ch.Usage.PromptTokens
			if ch.Usage.CompletionTokens > 0 {
				res.Tokens = max(res.Tokens, ch.Usage.CompletionTokens)
			}
		}
		for _, choice := range ch.Choices {
			if choice.Delta.Content != "" {
				if res.Tokens == 0 {
					res.FirstToken = time.Since(start)
				}
				res.Tokens++
				if err := onDelta(choice.Delta.Content); err != nil {
					return err
				}
			}
			if choice.FinishReason != nil && *choice.FinishReason != "" {
				res.Finish, finished = *choice.FinishReason, true
			}
		}
	}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date. 0 if
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// EstimateTokens guesses how many tokens text is: about four bytes each,
// as for English with the common tokenizers. The bot uses it to keep its
// context within a budget; it need not be exact.
func EstimateTokens(text string) int {
	return (len(text) + 3) / 4
}
