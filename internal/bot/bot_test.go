package bot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/servertest"
	"github.com/secure-messenger/messenger/internal/syncbuf"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// testServer is a real server over real WebSockets, with its database
// files in dir and its log in logs.
type testServer struct {
	url  string
	fp   protocol.Fingerprint
	dir  string
	logs *syncbuf.Buffer
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	logs := &syncbuf.Buffer{}
	ts := servertest.Start(t, server.Config{PingInterval: 5 * time.Second}, zerolog.New(logs).Level(zerolog.DebugLevel))
	return &testServer{url: ts.URL, fp: ts.Fingerprint, dir: ts.Dir, logs: logs}
}

func (ts *testServer) dialConfig() client.Config {
	return client.Config{URL: ts.url, VerifyIdentity: client.Pin(ts.fp)}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// user registers a person with fresh keys and returns the connection.
func user(t *testing.T, ts *testServer, name string) (*client.Conn, *client.Identity) {
	t.Helper()
	c, err := client.Dial(ctxT(t), ts.dialConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	id, err := client.NewIdentity(name, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctxT(t), id, name+" password"); err != nil {
		t.Fatal(err)
	}
	return c, id
}

// startBot runs a bot as its own client and waits until it is signed in;
// it stops at the end of the test.
func startBot(t *testing.T, ts *testServer, mod func(*Config)) (*Bot, *syncbuf.Buffer) {
	t.Helper()
	b, logs, _ := runBot(t, ts, filepath.Join(t.TempDir(), "bot"), mod)
	return b, logs
}

// runBot runs a bot with its profile in profile and waits until it is
// signed in and caught up; stop ends it and waits (also done at the end
// of the test).
func runBot(t *testing.T, ts *testServer, profile string, mod func(*Config)) (b *Bot, logs *syncbuf.Buffer, stop func()) {
	t.Helper()
	logs = &syncbuf.Buffer{}
	cfg := Config{
		Name: "bot", Profile: profile, Dial: ts.dialConfig(), KeyBits: 2048,
		Model: &llm.Offline{Delay: 40 * time.Millisecond}, Batch: 100 * time.Millisecond, Log: zerolog.New(logs),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, func() { close(ready) }) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("bot did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("bot ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("bot not ready")
	}
	return b, logs, stop
}

// next returns the next pushed message of one of types.
func next(t *testing.T, c *client.Conn, types ...string) *protocol.Message {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("connection ended: %v", c.Err())
			}
			for _, typ := range types {
				if m.Type == typ {
					return m
				}
			}
		case <-timeout:
			t.Fatalf("no %v", types)
		}
	}
}

// watched is what one member saw of one streamed answer.
type watched struct {
	stream string
	deltas []string
	reason string
	final  *protocol.Message
}

// watchAnswer follows the bot's next streamed answer in room on c, until
// the stored message linked to it; stopAfter > 0 calls stop after that
// many deltas.
func watchAnswer(t *testing.T, c *client.Conn, room string, stopAfter int, stop func(stream string)) watched {
	t.Helper()
	return watchStream(t, c, room, "", stopAfter, stop)
}

// watchStream is watchAnswer for a stream whose start was seen already
// (stream "": the next one).
func watchStream(t *testing.T, c *client.Conn, room, stream string, stopAfter int, stop func(stream string)) watched {
	t.Helper()
	w := watched{stream: stream}
	for w.final == nil {
		m := next(t, c, protocol.MsgStream, protocol.MsgMessage)
		if m.Room != room || m.From != "bot" {
			continue
		}
		switch {
		case m.Type == protocol.MsgStream && m.Event == protocol.StreamStart:
			w.stream = m.Stream
		case m.Type == protocol.MsgStream && m.Event == protocol.StreamDelta && m.Stream == w.stream:
			w.deltas = append(w.deltas, m.Body)
			if len(w.deltas) == stopAfter {
				stop(w.stream)
			}
		case m.Type == protocol.MsgStream && m.Event == protocol.StreamEnd && m.Stream == w.stream:
			w.reason = m.Reason
		case m.Type == protocol.MsgMessage && m.Stream != "" && m.Stream == w.stream:
			w.final = m
		}
	}
	if w.stream == "" || w.reason == "" {
		t.Fatalf("stream incomplete: %+v", w)
	}
	return w
}

// TestBotInRoom: alice and bob in a room; alice mentions the bot, which
// is not in the room: it joins, and both see the answer grow and then
// the stored message. Bob stops the next answer in the middle. Then
// "@bot leave" makes it leave.
func TestBotInRoom(t *testing.T) {
	ts := startServer(t)
	ca, _ := user(t, ts, "alice")
	cb, _ := user(t, ts, "bob")
	for _, c := range []*client.Conn{ca, cb} {
		if _, err := c.Join(ctxT(t), "general", ""); err != nil {
			t.Fatal(err)
		}
	}
	_, botLog := startBot(t, ts, nil)
	if _, err := ca.Send(ctxT(t), "general", "@bot what is the capital of France"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]watched{}
	for name, c := range map[string]*client.Conn{"alice": ca, "bob": cb} {
		w := watchAnswer(t, c, "general", 0, nil)
		if len(w.deltas) < 2 || w.reason != protocol.ReasonDone {
			t.Fatalf("%s: %d deltas, reason %q", name, len(w.deltas), w.reason)
		}
		if got := strings.Join(w.deltas, ""); strings.TrimSpace(got) != w.final.Body {
			t.Fatalf("%s: deltas %q, stored %q", name, got, w.final.Body)
		}
		if !strings.HasPrefix(w.final.Body, llm.OfflineLabel) || !strings.Contains(w.final.Body, "capital of France") || w.final.Seq == 0 {
			t.Fatalf("%s: answer %+v", name, w.final)
		}
		seen[name] = w
	}
	if seen["alice"].stream != seen["bob"].stream {
		t.Fatal("alice and bob saw different streams")
	}

	// A stop in the middle.
	if _, err := ca.Send(ctxT(t), "general", "@bot tell me more"); err != nil {
		t.Fatal(err)
	}
	w := watchAnswer(t, cb, "general", 1, func(stream string) {
		if _, err := cb.Request(ctxT(t), &protocol.Message{Type: protocol.MsgStream, Room: "general", Stream: stream, Event: protocol.StreamStop}); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if w.reason != protocol.ReasonStop || !strings.Contains(w.final.Body, "stopped by a member (bob)") {
		t.Fatalf("stopped answer: reason %q, body %q", w.reason, w.final.Body)
	}
	full := (&llm.Offline{}).Answer([]llm.Message{{Role: "user", Content: "alice: @bot tell me more"}})
	if strings.Contains(w.final.Body, full) {
		t.Fatal("the stopped answer is complete")
	}

	// Leave.
	if _, err := ca.Send(ctxT(t), "general", "@bot leave"); err != nil {
		t.Fatal(err)
	}
	for {
		m := next(t, ca, protocol.MsgPresence)
		if m.From == "bot" && m.Event == "leave" {
			break
		}
	}
	// The bot's log has timings and counts, not the text.
	for _, s := range []string{"capital", "France", "tell me more"} {
		if strings.Contains(botLog.String(), s) || strings.Contains(ts.logs.String(), s) {
			t.Errorf("a log holds %q", s)
		}
	}
	if !strings.Contains(botLog.String(), `"tokens":`) {
		t.Errorf("the bot's log has no token counts: %s", botLog.String())
	}
}

// TestBotQueueAndFailure: mentions made while an answer runs wait in
// the room's queue (QueueLength 1 here), one more is refused with a
// message saying so, and the queued one is answered after the running
// one; a backend that fails becomes a clear message in the room.
func TestBotQueueAndFailure(t *testing.T) {
	ts := startServer(t)
	ca, _ := user(t, ts, "alice")
	if _, err := ca.Join(ctxT(t), "general", ""); err != nil {
		t.Fatal(err)
	}
	model := &gated{release: make(chan struct{})}
	startBot(t, ts, func(c *Config) {
		c.Rooms = []string{"general"}
		c.Model = model
		c.QueueLength = 1
	})
	if _, err := ca.Send(ctxT(t), "general", "@bot first, please fail"); err != nil {
		t.Fatal(err)
	}
	started := next(t, ca, protocol.MsgStream) // it has started, and waits for release
	if started.Event != protocol.StreamStart {
		t.Fatalf("first stream event: %+v", started)
	}
	for _, q := range []string{"@bot second", "@bot third"} {
		if _, err := ca.Send(ctxT(t), "general", q); err != nil {
			t.Fatal(err)
		}
	}
	// The third is refused while the first still runs.
	for {
		m := next(t, ca, protocol.MsgMessage)
		if m.From != "bot" {
			continue
		}
		if m.Stream != "" || !strings.Contains(m.Body, "alice, 1 questions are already waiting") {
			t.Fatalf("before the refusal: %+v", m)
		}
		break
	}
	close(model.release)
	first := watchStream(t, ca, "general", started.Stream, 0, nil)
	if first.reason != protocol.ReasonError || !strings.Contains(first.final.Body, "endpoint refused the request (HTTP 503)") {
		t.Fatalf("first: reason %q, body %q", first.reason, first.final.Body)
	}
	second := watchAnswer(t, ca, "general", 0, nil)
	if second.reason != protocol.ReasonDone || !strings.Contains(second.final.Body, `alice: @bot second"`) {
		t.Fatalf("second: reason %q, body %q", second.reason, second.final.Body)
	}
	if second.stream == first.stream {
		t.Fatal("one stream for two answers")
	}
}

// gated answers as llm.Offline once release is closed (only prompts
// whose last turn says "wait", if only is set); a prompt whose last turn
// says "fail" streams two pieces and then fails as an endpoint answering
// 503 would.
type gated struct {
	release chan struct{}
	only    bool
}

func (g *gated) Stream(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Result, error) {
	last := req.Messages[len(req.Messages)-1].Content
	if !g.only || strings.Contains(last, "wait") {
		select {
		case <-g.release:
		case <-ctx.Done():
			return llm.Result{}, ctx.Err()
		}
	}
	fail := strings.Contains(last, "fail")
	n := 0
	res, err := (&llm.Offline{Delay: 10 * time.Millisecond}).Stream(ctx, req, func(s string) error {
		if n++; fail && n > 2 {
			return errFailed
		}
		return onDelta(s)
	})
	if errors.Is(err, errFailed) {
		err = fmt.Errorf("%w: HTTP 503", llm.ErrStatus)
	}
	return res, err
}

var errFailed = errors.New("failing on purpose")

// TestBotPlacesIndependent: while an answer in one room waits on the
// model, the bot still reads its connection: a mention in another room
// and a direct message are answered meanwhile, and the waiting answer
// comes once the model goes on.
func TestBotPlacesIndependent(t *testing.T) {
	ts := startServer(t)
	ca, _ := user(t, ts, "alice")
	cc, carol := user(t, ts, "carol")
	for _, r := range []string{"slow", "quick"} {
		if _, err := ca.Join(ctxT(t), r, ""); err != nil {
			t.Fatal(err)
		}
	}
	model := &gated{release: make(chan struct{}), only: true}
	startBot(t, ts, func(c *Config) { c.Model = model })
	if _, err := ca.Send(ctxT(t), "slow", "@bot please wait"); err != nil {
		t.Fatal(err)
	}
	started := next(t, ca, protocol.MsgStream)
	if started.Room != "slow" || started.Event != protocol.StreamStart {
		t.Fatalf("first stream event: %+v", started)
	}
	if _, err := ca.Send(ctxT(t), "quick", "@bot hello"); err != nil {
		t.Fatal(err)
	}
	if w := watchAnswer(t, ca, "quick", 0, nil); !strings.Contains(w.final.Body, "alice: @bot hello") {
		t.Fatalf("quick room got %q", w.final.Body)
	}
	cv, err := cc.OpenConversation(ctxT(t), carol, "bot", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cv.SendText(ctxT(t), "are you there"); err != nil {
		t.Fatal(err)
	}
	if got := convAnswer(t, cc, cv); !strings.Contains(got.Text, "are you there") {
		t.Fatalf("direct answer %q", got.Text)
	}
	close(model.release)
	if w := watchStream(t, ca, "slow", started.Stream, 0, nil); !strings.Contains(w.final.Body, "please wait") {
		t.Fatalf("slow room got %q", w.final.Body)
	}
}

// TestBotDirect: carol talks with the bot in a direct conversation: the
// answer streams as end-to-end records she opens, then arrives as a
// stored record linked to the stream; the marker she sent is nowhere on
// the server side (database files, server log) nor in the bot's log.
func TestBotDirect(t *testing.T) {
	ts := startServer(t)
	cc, carol := user(t, ts, "carol")
	b, botLog := startBot(t, ts, nil)
	cv, err := cc.OpenConversation(ctxT(t), carol, "bot", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	marker := "marker " + uuid.NewString() + " purple elephant"
	if _, _, err := cv.SendText(ctxT(t), marker); err != nil {
		t.Fatal(err)
	}
	var stream string
	var deltas strings.Builder
	var final *client.Received
	for final == nil {
		m := next(t, cc, protocol.MsgConvStream, protocol.MsgConvMsg, protocol.MsgConvKey)
		switch {
		case m.Type == protocol.MsgConvKey:
			if _, err := cv.Receive(ctxT(t), m); err != nil {
				t.Fatal(err)
			}
		case m.Type == protocol.MsgConvStream && m.Event == protocol.StreamStart:
			stream = m.Stream
		case m.Type == protocol.MsgConvStream && m.Event == protocol.StreamDelta && m.Stream == stream:
			rec := *m
			rec.Type = protocol.MsgConvMsg
			got, err := cv.Receive(ctxT(t), &rec)
			if err != nil || got == nil || got.From != "bot" {
				t.Fatalf("delta: %+v %v", got, err)
			}
			deltas.WriteString(got.Text)
		case m.Type == protocol.MsgConvMsg && m.Stream == stream && stream != "":
			got, err := cv.Receive(ctxT(t), m)
			if err != nil || got == nil {
				t.Fatalf("final: %v", err)
			}
			final = got
		}
	}
	if !strings.HasPrefix(final.Text, llm.OfflineLabel) || !strings.Contains(final.Text, marker) || strings.TrimSpace(deltas.String()) != final.Text {
		t.Fatalf("final %q, deltas %q", final.Text, deltas.String())
	}

	search := func(what string, data []byte) {
		t.Helper()
		if f := markerIn(marker, data); f != nil {
			t.Errorf("%s holds the marker (as %q)", what, f)
		}
	}
	files, _ := filepath.Glob(filepath.Join(ts.dir, "messenger.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		search(filepath.Base(f), data)
	}
	search("the server's log", []byte(ts.logs.String()))
	// The bot's own state (counters, replay guard) holds no text either.
	state, _ := filepath.Glob(filepath.Join(b.cfg.Profile, "conversations", "*"))
	if len(state) < 2 {
		t.Fatalf("bot state files %v, want the counters and the replay guard", state)
	}
	for _, f := range state {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", filepath.Base(f), fi.Mode().Perm())
		}
		search("the bot's "+filepath.Base(f), data)
	}
	search("the bot's log", []byte(botLog.String()))
}

// markerIn returns the form of marker (plain, hex, base64 at each
// alignment) that data holds, or nil; as in internal/server's marker
// test.
func markerIn(marker string, data []byte) []byte {
	forms := [][]byte{[]byte(marker), []byte(hex.EncodeToString([]byte(marker)))}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for k := range 3 {
			e := enc.EncodeToString(append(make([]byte, k), marker...))
			forms = append(forms, []byte(e[4:len(e)-4]))
		}
	}
	lower := bytes.ToLower(data)
	for _, f := range forms {
		if bytes.Contains(data, f) || bytes.Contains(lower, bytes.ToLower(f)) {
			return f
		}
	}
	return nil
}

func TestBuildPrompt(t *testing.T) {
	turns := []llm.Message{{Role: "user", Content: strings.Repeat("a", 400)}, {Role: "user", Content: strings.Repeat("b", 400)}, {Role: "user", Content: "c"}}
	p := buildPrompt("sys", turns, 120)
	if len(p) != 3 || p[0].Content != "sys" || p[2].Content != "c" {
		t.Fatalf("%d messages: %+v", len(p), p)
	}
	// The newest turn is kept even over the budget.
	if p := buildPrompt("sys", turns[:1], 10); len(p) != 2 {
		t.Fatalf("%+v", p)
	}
}

// recorder answers as llm.Offline and keeps every prompt it was given.
type recorder struct {
	llm.Offline
	mu      sync.Mutex
	prompts [][]llm.Message
}

func (r *recorder) Stream(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Result, error) {
	r.mu.Lock()
	r.prompts = append(r.prompts, req.Messages)
	r.mu.Unlock()
	return r.Offline.Stream(ctx, req, onDelta)
}

// promptFor returns the prompt whose last turn contains text.
func (r *recorder) promptFor(t *testing.T, text string) []llm.Message {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.prompts {
		if strings.Contains(p[len(p)-1].Content, text) {
			return p
		}
	}
	t.Fatalf("no prompt ends with %q", text)
	return nil
}

// convAnswer reads conversation events on c until the bot's stored
// answer (a conv_msg linked to a stream) and returns it opened.
func convAnswer(t *testing.T, c *client.Conn, cv *client.Conversation) *client.Received {
	t.Helper()
	for {
		m := next(t, c, protocol.MsgConvMsg, protocol.MsgConvKey)
		got, err := cv.Receive(ctxT(t), m)
		if err != nil {
			t.Fatal(err)
		}
		if got != nil && got.From == "bot" && m.Stream != "" {
			return got
		}
	}
}

// roomAnswers counts the bot's stored answers in room's history that
// contain text.
func roomAnswers(t *testing.T, c *client.Conn, room, text string) int {
	t.Helper()
	h, err := c.History(ctxT(t), room, client.HistoryQuery{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range h.Msgs {
		if m.From == "bot" && strings.Contains(m.Body, text) {
			n++
		}
	}
	return n
}

// TestBotRestart: the bot keeps what it needs in its profile. After a
// restart it goes on in its direct conversation under the same key
// version, with the earlier turns (both sides, read back from history)
// as context; it answers what was sent to it while it was away, in the
// conversation and as a mention in a room it is in; and a third start
// answers none of that again.
func TestBotRestart(t *testing.T) {
	ts := startServer(t)
	ca, _ := user(t, ts, "alice")
	cc, carol := user(t, ts, "carol")
	if _, err := ca.Join(ctxT(t), "general", ""); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(t.TempDir(), "bot")
	model := &recorder{Offline: llm.Offline{Delay: 5 * time.Millisecond}}
	withModel := func(c *Config) { c.Model = model }

	_, _, stop := runBot(t, ts, profile, withModel)
	if _, err := ca.Send(ctxT(t), "general", "@bot hello from alice"); err != nil {
		t.Fatal(err)
	}
	watchAnswer(t, ca, "general", 0, nil)
	if _, err := ca.Send(ctxT(t), "general", "@bot answer all"); err != nil {
		t.Fatal(err)
	}
	for m := next(t, ca, protocol.MsgMessage); m.From != "bot"; m = next(t, ca, protocol.MsgMessage) {
	}
	cv, err := cc.OpenConversation(ctxT(t), carol, "bot", client.ConversationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cv.SendText(ctxT(t), "first question, orange"); err != nil {
		t.Fatal(err)
	}
	firstAnswer := convAnswer(t, cc, cv)
	stop()

	// While it is away: chatter (not answered on return, although the
	// room answers all) and a mention (answered).
	for _, text := range []string{"plain chatter, grey", "@bot missed question, violet"} {
		if _, err := ca.Send(ctxT(t), "general", text); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cv.SendText(ctxT(t), "second question, teal"); err != nil {
		t.Fatal(err)
	}
	// Carol had no counter for the bot's key version, so she made the
	// next; the bot goes on under hers from its kept counters.
	version := cv.KeyVersion()

	_, _, stop = runBot(t, ts, profile, withModel)
	w := watchAnswer(t, ca, "general", 0, nil)
	if !strings.Contains(w.final.Body, "missed question, violet") {
		t.Fatalf("the missed mention got %q", w.final.Body)
	}
	second := convAnswer(t, cc, cv)
	if !strings.Contains(second.Text, "second question, teal") {
		t.Fatalf("the missed message got %q", second.Text)
	}
	if second.KeyVersion != version {
		t.Fatalf("key version %d after the restart, %d before: the counters were not kept", second.KeyVersion, version)
	}
	p := model.promptFor(t, "second question, teal")
	if len(p) != 4 || p[1].Content != "first question, orange" || p[2].Role != "assistant" || p[2].Content != firstAnswer.Text {
		t.Fatalf("context after the restart: %+v", p)
	}
	stop()

	// A third start answers nothing again: the next answers are to new
	// questions (in the room, to one without a mention: "answer all" was
	// kept in the profile), and each missed one has exactly one answer.
	runBot(t, ts, profile, withModel)
	if _, err := ca.Send(ctxT(t), "general", "third start, amber"); err != nil {
		t.Fatal(err)
	}
	if w := watchAnswer(t, ca, "general", 0, nil); !strings.Contains(w.final.Body, "third start, amber") {
		t.Fatalf("after the third start the room got %q", w.final.Body)
	}
	if _, _, err := cv.SendText(ctxT(t), "third question, lime"); err != nil {
		t.Fatal(err)
	}
	if got := convAnswer(t, cc, cv); !strings.Contains(got.Text, "third question, lime") || got.KeyVersion != version {
		t.Fatalf("after the third start the conversation got %q under key version %d, want %d", got.Text, got.KeyVersion, version)
	}
	if n := roomAnswers(t, ca, "general", "missed question, violet"); n != 1 {
		t.Fatalf("%d answers to the missed mention", n)
	}
	if n := roomAnswers(t, ca, "general", "plain chatter"); n != 0 {
		t.Fatalf("%d answers to chatter said while the bot was away", n)
	}
	recs, _, err := cv.History(ctxT(t), client.HistoryQuery{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.From == "bot" && strings.Contains(r.Text, "second question, teal") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d answers to the missed direct message", n)
	}
}
