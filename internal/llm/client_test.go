package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// chunk is one SSE data line carrying a delta (and a finish reason).
func chunk(content string, finish string) string {
	c := map[string]any{"choices": []any{map[string]any{"delta": map[string]any{"content": content}, "finish_reason": nil}}}
	if finish != "" {
		c["choices"] = []any{map[string]any{"delta": map[string]any{}, "finish_reason": finish}}
	}
	b, _ := json.Marshal(c)
	return "data: " + string(b) + "\n\n"
}

// endpoint is an OpenAI-compatible test server: each request is handed
// to the handler for its number (0, 1, …), which writes the stream.
type endpoint struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   []chatRequest
	times    []time.Time
	n        atomic.Int32
}

func newEndpoint(t *testing.T, handler func(n int, w http.ResponseWriter, r *http.Request)) *endpoint {
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body chatRequest
		_ = json.NewDecoder(r.Body).Decode(&body)
		e.mu.Lock()
		e.requests = append(e.requests, r)
		e.bodies = append(e.bodies, body)
		e.times = append(e.times, time.Now())
		e.mu.Unlock()
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		handler(int(e.n.Add(1)-1), w, r)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) client() *Client {
	return &Client{URL: e.URL + "/v1", Model: "test-model", APIKey: "sk-secret", Backoff: 10 * time.Millisecond, IdleTimeout: 5 * time.Second}
}

// stream writes parts, flushing after each, with pause between.
func stream(w http.ResponseWriter, pause time.Duration, parts ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	for _, p := range parts {
		_, _ = io.WriteString(w, p)
		f.Flush()
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

func collect(t *testing.T, c *Client, ctx context.Context) (string, Result, error) {
	t.Helper()
	var sb strings.Builder
	res, err := c.Stream(ctx, Request{Messages: []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, MaxTokens: 50},
		func(s string) error { sb.WriteString(s); return nil })
	return sb.String(), res, err
}

func TestStreamNormal(t *testing.T) {
	e := newEndpoint(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		stream(w, 0, ": a comment\n\n", chunk("Hel", ""), chunk("lo", ""), chunk("!", ""), chunk("", "stop"),
			`data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}`+"\n\n", "data: [DONE]\n\n")
	})
	text, res, err := collect(t, e.client(), context.Background())
	if err != nil || text != "Hello!" || res.Finish != "stop" || res.Tokens != 3 || res.PromptTokens != 7 || res.Attempts != 1 {
		t.Fatalf("got %q %+v %v", text, res, err)
	}
	r, body := e.requests[0], e.bodies[0]
	if r.Header.Get("Authorization") != "Bearer sk-secret" || r.Header.Get("Accept") != "text/event-stream" {
		t.Errorf("headers %v", r.Header)
	}
	if body.Model != "test-model" || !body.Stream || body.MaxTokens != 50 || len(body.Messages) != 2 || body.Messages[1].Content != "hi" {
		t.Errorf("body %+v", body)
	}
}

// TestStreamSlow: a stream whose whole length is far over the idle
// timeout, but whose every gap is under it, is not cut; one whose gap is
// over it ends with ErrStalled, keeping what came.
func TestStreamSlow(t *testing.T) {
	parts := []string{}
	for i := range 8 {
		parts = append(parts, chunk(fmt.Sprint(i), ""))
	}
	parts = append(parts, chunk("", "stop"), "data: [DONE]\n\n")
	e := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) { stream(w, 100*time.Millisecond, parts...) })
	c := e.client()
	c.IdleTimeout = 2 * time.Second
	text, res, err := collect(t, c, context.Background())
	if err != nil || text != "01234567" || res.Finish != "stop" {
		t.Fatalf("slow stream: %q %+v %v", text, res, err)
	}

	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	e2 := newEndpoint(t, func(n int, w http.ResponseWriter, r *http.Request) {
		stream(w, 0, chunk("par", ""), chunk("tial", ""))
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})
	c2 := e2.client()
	c2.IdleTimeout = 300 * time.Millisecond
	text, res, err = collect(t, c2, context.Background())
	if !errors.Is(err, ErrStalled) || text != "partial" || res.Attempts != 1 {
		t.Fatalf("stalled stream: %q %+v %v", text, res, err)
	}
}

// TestStreamErrorMidStream: an error event after some deltas ends the
// stream with ErrModel, without a retry; so does a connection cut after
// some deltas (ErrTruncated).
func TestStreamErrorMidStream(t *testing.T) {
	e := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		stream(w, 0, chunk("one ", ""), chunk("two ", ""), `data: {"error":{"message":"model crashed"}}`+"\n\n")
	})
	text, res, err := collect(t, e.client(), context.Background())
	if !errors.Is(err, ErrModel) || text != "one two " || res.Attempts != 1 || len(e.requests) != 1 {
		t.Fatalf("%q %+v %v", text, res, err)
	}
	cut := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		stream(w, 0, chunk("one ", ""))
		panic(http.ErrAbortHandler) // drop the connection
	})
	text, res, err = collect(t, cut.client(), context.Background())
	if err == nil || text != "one " || res.Attempts != 1 {
		t.Fatalf("cut: %q %+v %v", text, res, err)
	}
}

// TestStreamRetryAfter: a 429 with Retry-After is tried again no sooner
// than it says; a 5xx is retried with backoff; a 400 is not retried;
// retries stop after Retries.
func TestStreamRetryAfter(t *testing.T) {
	e := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 0:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 1:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		default:
			stream(w, 0, chunk("ok", ""), chunk("", "stop"), "data: [DONE]\n\n")
		}
	})
	text, res, err := collect(t, e.client(), context.Background())
	if err != nil || text != "ok" || res.Attempts != 3 {
		t.Fatalf("%q %+v %v", text, res, err)
	}
	if gap := e.times[1].Sub(e.times[0]); gap < time.Second {
		t.Errorf("retried %s after a Retry-After of 1 s", gap)
	}

	bad := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such model", http.StatusBadRequest)
	})
	_, res, err = collect(t, bad.client(), context.Background())
	if !errors.Is(err, ErrStatus) || res.Attempts != 1 || strings.Contains(err.Error(), "no such model") {
		t.Fatalf("400: %+v %v", res, err)
	}
	down := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	_, res, err = collect(t, down.client(), context.Background())
	if !errors.Is(err, ErrStatus) || res.Attempts != 3 || len(down.requests) != 3 {
		t.Fatalf("502: %+v %v, %d requests", res, err, len(down.requests))
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "x": 0, "-1": 0,
		now.Add(10 * time.Second).Format(http.TimeFormat): 10 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

// TestStreamWithoutDone: a stream that ends after a finish reason but
// without [DONE] is complete; one that ends with neither is ErrTruncated
// (after deltas: no retry).
func TestStreamWithoutDone(t *testing.T) {
	e := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) { stream(w, 0, chunk("a", ""), chunk("", "length")) })
	text, res, err := collect(t, e.client(), context.Background())
	if err != nil || text != "a" || res.Finish != "length" {
		t.Fatalf("%q %+v %v", text, res, err)
	}
	e2 := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) { stream(w, 0, chunk("a", ""), chunk("b", "")) })
	text, res, err = collect(t, e2.client(), context.Background())
	if !errors.Is(err, ErrTruncated) || text != "ab" || res.Attempts != 1 {
		t.Fatalf("%q %+v %v", text, res, err)
	}
}

// TestStreamMalformed: unknown fields, comments and blank data lines are
// skipped as the SSE format says; a data line that is not JSON is
// ErrMalformed.
func TestStreamMalformed(t *testing.T) {
	e := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		stream(w, 0, "event: message\nid: 7\nretry: 10\nnonsense line\n"+strings.TrimSuffix(chunk("a", ""), "\n")+"\n\n", "data:\n\n", chunk("b", ""), "data: {not json\n\n")
	})
	text, _, err := collect(t, e.client(), context.Background())
	if !errors.Is(err, ErrMalformed) || text != "ab" {
		t.Fatalf("%q %v", text, err)
	}
	long := newEndpoint(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		stream(w, 0, chunk("a", ""), "data: "+strings.Repeat("x", maxSSELine+10)+"\n\n")
	})
	text, _, err = collect(t, long.client(), context.Background())
	if !errors.Is(err, ErrMalformed) || text != "a" {
		t.Fatalf("over-long line: %q %v", text, err)
	}
}

// TestStreamCancelled: cancelling the context (a user's stop) ends the
// stream at once with context.Canceled, and the endpoint sees its
// request cancelled.
func TestStreamCancelled(t *testing.T) {
	gone := make(chan struct{})
	e := newEndpoint(t, func(n int, w http.ResponseWriter, r *http.Request) {
		stream(w, 0, chunk("first", ""))
		<-r.Context().Done()
		close(gone)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	res, err := e.client().Stream(ctx, Request{Messages: []Message{{Role: "user", Content: "x"}}}, func(s string) error {
		got = append(got, s)
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(got) != 1 || res.Attempts != 1 {
		t.Fatalf("%v %+v %v", got, res, err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint's request was not cancelled")
	}
}

// TestOffline: the stand-in is labelled, deterministic, streams in
// pieces, honours MaxTokens with "length" and stops when cancelled.
func TestOffline(t *testing.T) {
	o := &Offline{Delay: time.Millisecond}
	req := Request{Messages: []Message{{Role: "system", Content: "s"}, {Role: "user", Content: "what is two and two"}}}
	var a, b strings.Builder
	n := 0
	res, err := o.Stream(context.Background(), req, func(s string) error { a.WriteString(s); n++; return nil })
	if err != nil || res.Finish != "stop" || n < 5 || !strings.HasPrefix(a.String(), OfflineLabel) || !strings.Contains(a.String(), "what is two and two") {
		t.Fatalf("%q %+v %v", a.String(), res, err)
	}
	_, _ = o.Stream(context.Background(), req, func(s string) error { b.WriteString(s); return nil })
	if a.String() != b.String() || a.String() != o.Answer(req.Messages) {
		t.Fatal("offline answers differ")
	}
	req.MaxTokens = 3
	res, _ = o.Stream(context.Background(), req, func(string) error { return nil })
	if res.Finish != "length" || res.Tokens != 3 {
		t.Fatalf("capped: %+v", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req.MaxTokens = 0
	_, err = o.Stream(ctx, req, func(string) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
