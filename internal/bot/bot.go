// Package bot is the messenger's language-model bot: a member like any
// other, built on pkg/client with its own account and keys, that answers
// when mentioned in a room (joining rooms where it is mentioned, unless
// restricted), answers everything in a direct conversation (end to end:
// it holds its own private key), and streams its answers (docs/protocol.md
// §8.6).
//
// Its log records timings and token counts only, never a prompt or an
// answer.
package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/secure-messenger/messenger/internal/llm"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Model produces an answer as a stream of pieces: llm.Client for an
// OpenAI-compatible endpoint, llm.Offline without one.
type Model interface {
	Stream(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Result, error)
}

// Config is the bot's configuration. Zero values mean the defaults said.
type Config struct {
	// Name is the bot's user name: people mention it as "@Name".
	Name string
	// Profile is the directory of its keys (created 0700 on first run,
	// when the account is registered) and contact pins.
	Profile string
	// Dial says where the server is and how its identity is checked.
	Dial client.Config
	// Model answers. Nil means llm.Offline.
	Model Model
	// SystemPrompt starts every prompt. Empty means DefaultSystemPrompt.
	SystemPrompt string
	// ContextTokens is the budget of history put in a prompt (estimated
	// with llm.EstimateTokens). Zero means 2000.
	ContextTokens int
	// MaxTokens caps an answer; an answer cut there says so. Zero means
	// 512.
	MaxTokens int
	// Rooms, if not empty, are the only rooms the bot joins and answers
	// in (it joins them at start); otherwise it joins any room where it
	// is mentioned.
	Rooms []string
	// AnswerAll lists rooms where it answers every message, not only
	// mentions ("@Name answer all" and "@Name answer mentions" change it
	// per room while it runs).
	AnswerAll []string
	// MaxGenerations caps the answers generated at once over all rooms
	// and conversations. Zero means 4.
	MaxGenerations int
	// UserRate and UserBurst limit how often one user may ask. Zero
	// means one every 3 seconds, burst 5.
	UserRate  rate.Limit
	UserBurst int
	// Batch is how long deltas are gathered before one is sent. Zero
	// means 150 ms.
	Batch time.Duration
	// KeyBits sizes the keys made on first run. Zero means 3072.
	KeyBits int
	// Log receives timings and token counts.
	Log zerolog.Logger
}

// DefaultSystemPrompt is the system prompt when none is configured.
const DefaultSystemPrompt = "You are a helpful assistant in a group chat. Answer briefly and plainly. " +
	"Messages from people are given as \"name: text\"."

func (c *Config) setDefaults() {
	if c.Model == nil {
		c.Model = &llm.Offline{}
	}
	if c.SystemPrompt == "" {
		c.SystemPrompt = DefaultSystemPrompt
	}
	if c.ContextTokens <= 0 {
		c.ContextTokens = 2000
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = 512
	}
	if c.MaxGenerations <= 0 {
		c.MaxGenerations = 4
	}
	if c.UserRate == 0 {
		c.UserRate, c.UserBurst = rate.Every(3*time.Second), 5
	}
	if c.UserBurst <= 0 {
		c.UserBurst = 1
	}
	if c.Batch <= 0 {
		c.Batch = 150 * time.Millisecond
	}
}

// Bot is one running bot. Create it with New and run it with Run.
type Bot struct {
	cfg   Config
	log   zerolog.Logger
	slots chan struct{} // MaxGenerations

	mu        sync.Mutex
	conn      *client.Conn
	id        *client.Identity
	joined    map[string]bool
	answerAll map[string]bool
	active    map[string]*generation          // by place: "room:R" or "conv:C"
	byStream  map[string]*generation          // by stream id
	convs     map[string]*client.Conversation // by conversation id
	convLog   map[string][]llm.Message        // a conversation's recent turns (kept in memory only)
	limiters  map[string]*rate.Limiter
	wg        sync.WaitGroup
}

// generation is one answer being produced.
type generation struct {
	place  string
	stream string
	cancel context.CancelCauseFunc
}

// errStopped is the cause of a generation a member stopped.
var errStopped = errors.New("bot: stopped by a member")

// New returns a bot; cfg.Name and cfg.Profile are required.
func New(cfg Config) (*Bot, error) {
	if !protocol.ValidUserName(cfg.Name) {
		return nil, fmt.Errorf("bot: name %q is not a valid user name", cfg.Name)
	}
	if cfg.Profile == "" {
		return nil, errors.New("bot: profile directory missing")
	}
	cfg.setDefaults()
	b := &Bot{
		cfg: cfg, log: cfg.Log.With().Str("bot", cfg.Name).Logger(), slots: make(chan struct{}, cfg.MaxGenerations),
		joined: map[string]bool{}, answerAll: map[string]bool{}, active: map[string]*generation{},
		byStream: map[string]*generation{}, convs: map[string]*client.Conversation{},
		convLog: map[string][]llm.Message{}, limiters: map[string]*rate.Limiter{},
	}
	for _, r := range cfg.AnswerAll {
		b.answerAll[strings.ToLower(r)] = true
	}
	return b, nil
}

// Run connects, signs in (registering the account and saving its keys on
// the first run) and answers until ctx ends, reconnecting when the
// connection drops. ready, if not nil, is called once the first
// connection is signed in and has joined its rooms.
func (b *Bot) Run(ctx context.Context, ready func()) error {
	defer b.wg.Wait()
	wait := time.Second
	for {
		conn, err := b.connect(ctx)
		if err == nil {
			wait = time.Second
			if ready != nil {
				ready()
				ready = nil
			}
			b.serve(ctx, conn)
			conn.Close()
		} else {
			b.log.Warn().Err(err).Msg("connect failed")
			if errors.Is(err, errFatal) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// errFatal marks a failure retrying will not mend (bad keys, name taken).
var errFatal = errors.New("bot: cannot sign in")

func (b *Bot) connect(ctx context.Context) (*client.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := client.Dial(dctx, b.cfg.Dial)
	if err != nil {
		return nil, err
	}
	if err := b.signIn(dctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	b.mu.Lock()
	b.conn = conn
	b.mu.Unlock()
	rooms := map[string]bool{}
	for _, r := range b.cfg.Rooms {
		rooms[strings.ToLower(r)] = true
	}
	if len(b.cfg.Rooms) == 0 {
		mine, err := conn.Rooms(dctx)
		if err != nil {
			conn.Close()
			return nil, err
		}
		for _, r := range mine {
			rooms[r.Room] = true
		}
	}
	for r := range rooms {
		if err := b.join(dctx, conn, r); err != nil {
			b.log.Warn().Err(err).Msg("join failed")
		}
	}
	b.log.Info().Int("rooms", len(rooms)).Msg("bot signed in")
	return conn, nil
}

// signIn authenticates with the profile's keys, or on the first run
// makes keys, registers the account with a random password it does not
// keep (the keys alone sign in), and saves the keys.
func (b *Bot) signIn(ctx context.Context, conn *client.Conn) error {
	if client.HasIdentity(b.cfg.Profile) {
		id, err := client.LoadIdentity(b.cfg.Profile, b.cfg.Name)
		if err != nil {
			return fmt.Errorf("%w: %w", errFatal, err)
		}
		if _, err := conn.Auth(ctx, id); err != nil {
			var pe *protocol.PeerError
			if errors.As(err, &pe) && (pe.Code == protocol.CodeAuthFailed || pe.Code == protocol.CodeBadKey) {
				return fmt.Errorf("%w: %w", errFatal, err)
			}
			return err
		}
		if id.Device != uuid.Nil {
			_ = id.SaveDevice(b.cfg.Profile)
		}
		b.id = id
		return nil
	}
	id, err := client.NewIdentity(b.cfg.Name, b.cfg.KeyBits)
	if err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	id.DeviceName = "bot"
	pw := make([]byte, 24)
	_, _ = rand.Read(pw)
	if _, err := conn.Register(ctx, id, hex.EncodeToString(pw)); err != nil {
		var pe *protocol.PeerError
		if errors.As(err, &pe) && pe.Code == protocol.CodeConflict {
			return fmt.Errorf("%w: the name %q is taken by an account whose keys are not in %s: %w", errFatal, b.cfg.Name, b.cfg.Profile, err)
		}
		return err
	}
	if err := id.Save(b.cfg.Profile); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	b.id = id
	b.log.Info().Msg("registered the bot's account")
	return nil
}

// join enters room, starting at its head: the bot answers what is said
// from now on, not what it missed.
func (b *Bot) join(ctx context.Context, conn *client.Conn, room string) error {
	if !b.allowedRoom(room) {
		return nil
	}
	head := int64(-1)
	if rs, err := conn.Rooms(ctx); err == nil {
		for _, r := range rs {
			if r.Room == room {
				head = r.Head
			}
		}
	}
	var after *int64
	if head >= 0 {
		after = &head
	}
	r, err := conn.JoinAfter(ctx, room, "", after)
	if err != nil {
		return err
	}
	_ = r
	b.mu.Lock()
	b.joined[room] = true
	b.mu.Unlock()
	return nil
}

func (b *Bot) allowedRoom(room string) bool {
	return len(b.cfg.Rooms) == 0 || slices.ContainsFunc(b.cfg.Rooms, func(r string) bool { return strings.EqualFold(r, room) })
}

// serve handles what the server pushes until the connection ends.
func (b *Bot) serve(ctx context.Context, conn *client.Conn) {
	for {
		select {
		case <-ctx.Done():
			b.stopAll()
			return
		case m, ok := <-conn.Messages():
			if !ok {
				b.stopAll()
				b.log.Info().Err(conn.Err()).Msg("connection ended")
				return
			}
			b.handle(ctx, conn, m)
		}
	}
}

func (b *Bot) stopAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.active {
		g.cancel(context.Canceled)
	}
}

func (b *Bot) handle(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	switch m.Type {
	case protocol.MsgMessage:
		b.roomMessage(ctx, conn, m)
	case protocol.MsgMention:
		if !b.allowedRoom(m.Room) {
			return
		}
		go b.mentioned(ctx, conn, m)
	case protocol.MsgStream, protocol.MsgConvStream:
		if m.Event != protocol.StreamStop {
			return
		}
		b.mu.Lock()
		g := b.byStream[m.Stream]
		b.mu.Unlock()
		if g != nil && (g.place == "room:"+m.Room || g.place == "conv:"+m.Conv) {
			g.cancel(fmt.Errorf("%w (%s)", errStopped, m.From))
		}
	case protocol.MsgConvMsg, protocol.MsgConvKey:
		b.convEvent(ctx, conn, m)
	}
}

// mentioned joins the room a mention came from and answers the message.
func (b *Bot) mentioned(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b.mu.Lock()
	in := b.joined[m.Room]
	b.mu.Unlock()
	if !in {
		if err := b.join(jctx, conn, m.Room); err != nil {
			b.log.Warn().Err(err).Msg("join after a mention failed")
			return
		}
	}
	before := m.Seq + 1
	h, err := conn.History(jctx, m.Room, client.HistoryQuery{Before: &before, Limit: 1})
	if err != nil || len(h.Msgs) != 1 || h.Msgs[0].Seq != m.Seq {
		b.log.Warn().Err(err).Msg("mentioned message not found")
		return
	}
	b.roomMessage(ctx, conn, h.Msgs[0])
}

// mentionOf returns the text after "@name" if body mentions the bot.
func (b *Bot) mentionOf(body string) (string, bool) {
	for _, w := range strings.Fields(body) {
		if n, ok := strings.CutPrefix(w, "@"); ok && strings.EqualFold(strings.TrimRight(n, ",:;.!?"), b.cfg.Name) {
			_, rest, _ := strings.Cut(body, w)
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

func (b *Bot) roomMessage(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	if m.From == b.cfg.Name || m.Anon && m.From == b.cfg.Name {
		return
	}
	rest, mentioned := b.mentionOf(m.Body)
	b.mu.Lock()
	all := b.answerAll[m.Room]
	b.mu.Unlock()
	if !mentioned && !all {
		return
	}
	if !b.allowedRoom(m.Room) {
		return
	}
	if mentioned {
		switch strings.ToLower(rest) {
		case "leave":
			go b.leave(ctx, conn, m.Room, m.From)
			return
		case "answer all", "answer mentions":
			b.mu.Lock()
			b.answerAll[m.Room] = rest == "answer all"
			b.mu.Unlock()
			what := "only messages that mention me"
			if rest == "answer all" {
				what = "every message"
			}
			go b.say(ctx, conn, m.Room, "", "From now on I answer "+what+" in this room.")
			return
		}
	}
	b.start(ctx, m.From, "room:"+m.Room, func(gctx context.Context, g *generation) {
		b.answerRoom(gctx, conn, m, g)
	}, func(text string) { b.say(ctx, conn, m.Room, "", text) })
}

func (b *Bot) leave(ctx context.Context, conn *client.Conn, room, who string) {
	b.mu.Lock()
	if g := b.active["room:"+room]; g != nil {
		g.cancel(fmt.Errorf("%w (%s asked me to leave)", errStopped, who))
	}
	b.mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b.say(lctx, conn, room, "", "Leaving, as "+who+" asked. Mention me again to bring me back.")
	if err := conn.Leave(lctx, room); err != nil {
		b.log.Warn().Err(err).Msg("leave failed")
	}
	b.mu.Lock()
	delete(b.joined, room)
	b.mu.Unlock()
}

// say sends a plain message to a room (stream links it to a stream).
func (b *Bot) say(ctx context.Context, conn *client.Conn, room, stream, text string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, err := conn.Request(sctx, &protocol.Message{Type: protocol.MsgSend, Room: room, Body: fitBody(text), Mid: client.NewMessageID(), Stream: stream}); err != nil {
		b.log.Warn().Err(err).Msg("send failed")
	}
}

// fitBody cuts text to protocol.MaxBody bytes at a character boundary.
func fitBody(text string) string {
	if len(text) <= protocol.MaxBody {
		return text
	}
	cut := protocol.MaxBody - len("…")
	for cut > 0 && !isRuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}

func isRuneStart(c byte) bool { return c&0xC0 != 0x80 }

// start runs produce as the place's one generation, if the place is
// free, the global cap allows and the user is within their rate; else
// refuse says why.
func (b *Bot) start(ctx context.Context, user, place string, produce func(context.Context, *generation), refuse func(string)) {
	b.mu.Lock()
	lim := b.limiters[user]
	if lim == nil {
		lim = rate.NewLimiter(b.cfg.UserRate, b.cfg.UserBurst)
		b.limiters[user] = lim
	}
	busy := b.active[place] != nil
	b.mu.Unlock()
	switch {
	case busy:
		go refuse("I am still answering here. Wait for the answer, or stop it, and ask again.")
		return
	case !lim.Allow():
		go refuse(user + ", you are asking faster than I answer; wait a few seconds and ask again.")
		return
	}
	select {
	case b.slots <- struct{}{}:
	default:
		go refuse("I am answering too many people at once; ask again in a minute.")
		return
	}
	gctx, cancel := context.WithCancelCause(ctx)
	g := &generation{place: place, stream: uuid.NewString(), cancel: cancel}
	b.mu.Lock()
	b.active[place], b.byStream[g.stream] = g, g
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			cancel(nil)
			b.mu.Lock()
			delete(b.active, place)
			delete(b.byStream, g.stream)
			b.mu.Unlock()
			<-b.slots
		}()
		produce(gctx, g)
	}()
}
