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
	"github.com/secure-messenger/messenger/pkg/e2e"
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
	// and conversations; further ones wait for a free slot. Zero means 4.
	MaxGenerations int
	// QueueLength is how many requests may wait in one room or
	// conversation while an answer is generated there; one more is
	// refused with a message saying so. Zero means 3.
	QueueLength int
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
	if c.QueueLength <= 0 {
		c.QueueLength = 3
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
//
// The goroutine reading the connection only dispatches: each room and
// conversation (a "place") has an intake lane, which does in order the
// work a message needs before it can be answered (fetching a mentioned
// message, opening a record, a command), and an answer lane, which
// generates one answer at a time, with at most QueueLength waiting.
type Bot struct {
	cfg   Config
	log   zerolog.Logger
	slots chan struct{} // MaxGenerations

	mu        sync.Mutex
	conn      *client.Conn
	id        *client.Identity
	joined    map[string]bool
	answerAll map[string]bool
	switched  map[string]bool                 // answerAll changes made by members (rooms.json)
	places    map[string]*place               // by place: "room:R" or "conv:C"
	byStream  map[string]*generation          // by stream id
	convs     map[string]*client.Conversation // by conversation id, on the current connection
	guards    map[string]*e2e.ReplayGuard     // by conversation id, as saved in the profile
	sendLocks map[string]*sync.Mutex          // by conversation id (convSink.mu)
	limiters  map[string]*rate.Limiter
	wg        sync.WaitGroup
}

// place is the work of one room or conversation.
type place struct {
	intake  lane
	answers lane
	active  *generation // the answer being generated, if any
	// handled is the highest seq taken in (answered, queued or found
	// not to need an answer) on this connection: a message seen again
	// (a mention's history fetch and a catch-up overlapping) is not
	// answered twice.
	handled int64
	// caughtUp is the room's head when the bot came back: a message up to
	// it is one it missed while away, answered only if it mentions the
	// bot (not under "answer all", which would flood the room).
	caughtUp int64
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
		joined: map[string]bool{}, answerAll: map[string]bool{}, switched: map[string]bool{}, places: map[string]*place{},
		byStream: map[string]*generation{}, convs: map[string]*client.Conversation{},
		guards: map[string]*e2e.ReplayGuard{}, sendLocks: map[string]*sync.Mutex{}, limiters: map[string]*rate.Limiter{},
	}
	for _, r := range cfg.AnswerAll {
		b.answerAll[strings.ToLower(r)] = true
	}
	return b, nil
}

// placeLocked returns the place's lanes, making them the first time; b.mu
// is held.
func (b *Bot) placeLocked(name string) *place {
	p := b.places[name]
	if p == nil {
		p = &place{intake: lane{wg: &b.wg}, answers: lane{wg: &b.wg}}
		b.places[name] = p
	}
	return p
}

// maxIntake bounds the messages waiting in one place's intake lane; past
// it a message is dropped (and logged): it stays unread on the server,
// so the next catch-up takes it in.
const maxIntake = 256

// intake queues f on the place's intake lane; it never waits.
func (b *Bot) intake(name string, f func()) {
	b.mu.Lock()
	p := b.placeLocked(name)
	b.mu.Unlock()
	if _, ok := p.intake.push(f, maxIntake); !ok {
		b.log.Warn().Str("place", kindOf(name)).Msg("intake full: message left for the next catch-up")
	}
}

// kindOf is "room" or "conv": what the log may say of a place.
func kindOf(place string) string { return strings.SplitN(place, ":", 2)[0] }

// take records that seq of place is being handled, and reports false if
// it was already.
func (b *Bot) take(name string, seq int64) bool {
	if seq <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.placeLocked(name)
	if seq <= p.handled {
		return false
	}
	p.handled = seq
	return true
}

// Run connects, signs in (registering the account and saving its keys on
// the first run) and answers until ctx ends, reconnecting when the
// connection drops. After each sign-in it catches up: it answers what it
// was asked while it was away (catchUp). ready, if not nil, is called
// once the first connection is signed in and has joined its rooms.
func (b *Bot) Run(ctx context.Context, ready func()) error {
	defer b.wg.Wait()
	if err := b.loadRooms(); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	wait := time.Second
	for {
		conn, err := b.connect(ctx)
		if err == nil {
			wait = time.Second
			sctx, cancel := context.WithCancel(ctx)
			setupDone := make(chan struct{})
			onReady := ready
			ready = nil
			go func() {
				defer close(setupDone)
				b.catchUp(sctx, conn)
				if onReady != nil {
					onReady()
				}
			}()
			b.serve(ctx, conn) // reads while catchUp joins: its answers need the reader
			cancel()
			<-setupDone
			conn.Close()
			b.reset()
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

// connect dials and signs in.
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
	return conn, nil
}

// reset forgets what belonged to a connection that ended: the answers
// still waiting are dropped (they are unread on the server, so the next
// catch-up takes them in again), the open conversations and what was
// handled.
func (b *Bot) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.places {
		p.intake.clear()
		p.answers.clear()
		p.handled = 0
	}
	b.convs = map[string]*client.Conversation{}
	b.joined = map[string]bool{}
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
		b.mu.Lock()
		b.id = id
		b.mu.Unlock()
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
	b.mu.Lock()
	b.id = id
	b.mu.Unlock()
	b.log.Info().Msg("registered the bot's account")
	return nil
}

// maxCatchUp bounds the messages of one room the bot reads again after
// being away: older ones are not answered.
const maxCatchUp = 200

// catchUp joins the bot's rooms and answers what it was asked while it
// was away. The account's read position in a room or conversation is
// where the bot has answered up to (it moves it after each answer), so:
// a room it is a member of is joined from its read position (at most
// maxCatchUp messages back), and the messages the server then sends
// again go through the usual handling (a mention in them is answered);
// a room it joins for the first time, from its head. Of the messages it
// missed, only mentions are answered, also in an "answer all" room. A
// conversation
// with records after the read position has them opened and the newest
// of the other user's answered (catchUpConv).
func (b *Bot) catchUp(ctx context.Context, conn *client.Conn) {
	jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	positions := map[string]protocol.RoomPosition{}
	if mine, err := conn.Rooms(jctx); err == nil {
		for _, r := range mine {
			positions[r.Room] = r
		}
	} else {
		b.log.Warn().Err(err).Msg("rooms failed")
	}
	rooms := map[string]bool{}
	for _, r := range b.cfg.Rooms {
		rooms[strings.ToLower(r)] = true
	}
	if len(b.cfg.Rooms) == 0 {
		for r := range positions {
			rooms[r] = true
		}
	}
	for r := range rooms {
		var after *int64
		if pos, ok := positions[r]; ok {
			from := pos.Head
			if pos.Read > 0 {
				from = max(pos.Read, pos.Head-maxCatchUp)
			}
			after = &from
			b.mu.Lock() // set before the join: its messages may be handled before it returns
			b.placeLocked("room:" + r).caughtUp = pos.Head
			b.mu.Unlock()
		}
		if err := b.join(jctx, conn, r, after); err != nil {
			b.log.Warn().Err(err).Msg("join failed")
		}
	}
	n := 0
	if convs, err := conn.Conversations(jctx); err == nil {
		for _, c := range convs {
			if c.Head > c.Read {
				n++
				b.intake("conv:"+c.Conv, func() { b.catchUpConv(ctx, conn, c) })
			}
		}
	} else {
		b.log.Warn().Err(err).Msg("convs failed")
	}
	b.log.Info().Int("rooms", len(rooms)).Int("unread_convs", n).Msg("bot signed in")
}

// join enters room from after (nil: its head: the bot answers what is
// said from now on).
func (b *Bot) join(ctx context.Context, conn *client.Conn, room string, after *int64) error {
	if !b.allowedRoom(room) {
		return nil
	}
	if after == nil {
		head := int64(-1)
		if rs, err := conn.Rooms(ctx); err == nil {
			for _, r := range rs {
				if r.Room == room {
					head = r.Head
				}
			}
		}
		if head >= 0 {
			after = &head
		}
	}
	if _, err := conn.JoinAfter(ctx, room, "", after); err != nil {
		return err
	}
	b.mu.Lock()
	b.joined[room] = true
	b.mu.Unlock()
	return nil
}

func (b *Bot) allowedRoom(room string) bool {
	return len(b.cfg.Rooms) == 0 || slices.ContainsFunc(b.cfg.Rooms, func(r string) bool { return strings.EqualFold(r, room) })
}

// serve dispatches what the server pushes until the connection ends. It
// never waits on the network: the work goes to the places' lanes.
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
	for _, p := range b.places {
		p.answers.clear()
		if p.active != nil {
			p.active.cancel(context.Canceled)
		}
	}
}

// handle dispatches one pushed message; it runs on the reader.
func (b *Bot) handle(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	switch m.Type {
	case protocol.MsgMessage:
		if m.From == b.cfg.Name {
			return
		}
		b.intake("room:"+m.Room, func() { b.roomMessage(ctx, conn, m) })
	case protocol.MsgMention:
		if !b.allowedRoom(m.Room) {
			return
		}
		b.intake("room:"+m.Room, func() { b.mentioned(ctx, conn, m) })
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
		b.intake("conv:"+m.Conv, func() { b.convEvent(ctx, conn, m) })
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
		if err := b.join(jctx, conn, m.Room, nil); err != nil {
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

// roomMessage takes in a room message (on the room's intake lane): a
// command is carried out at once, a question queued for an answer.
func (b *Bot) roomMessage(ctx context.Context, conn *client.Conn, m *protocol.Message) {
	if m.From == b.cfg.Name || !b.allowedRoom(m.Room) {
		return
	}
	rest, mentioned := b.mentionOf(m.Body)
	b.mu.Lock()
	all := b.answerAll[m.Room] && m.Seq > b.placeLocked("room:"+m.Room).caughtUp
	b.mu.Unlock()
	if !mentioned && !all {
		return
	}
	place := "room:" + m.Room
	if !b.take(place, m.Seq) {
		return
	}
	if mentioned {
		switch strings.ToLower(rest) {
		case "leave":
			b.leave(ctx, conn, m.Room, m.From)
			return
		case "answer all", "answer mentions":
			all := strings.EqualFold(rest, "answer all")
			b.mu.Lock()
			b.answerAll[m.Room] = all
			b.switched[m.Room] = all
			if err := b.saveRoomsLocked(); err != nil {
				b.log.Warn().Err(err).Msg("rooms state not saved")
			}
			b.mu.Unlock()
			what := "only messages that mention me"
			if all {
				what = "every message"
			}
			b.say(ctx, conn, m.Room, "", "From now on I answer "+what+" in this room.")
			b.markRoom(ctx, conn, m.Room, m.Seq)
			return
		}
	}
	b.enqueue(ctx, m.From, place, func(gctx context.Context, g *generation) {
		b.answerRoom(gctx, conn, m, g)
		b.markRoom(ctx, conn, m.Room, m.Seq)
	}, func(text string) { b.say(ctx, conn, m.Room, "", text) })
}

// markRoom moves the account's read position in room to seq: the bot
// has answered up to there, and a catch-up starts after it.
func (b *Bot) markRoom(ctx context.Context, conn *client.Conn, room string, seq int64) {
	if seq <= 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	defer cancel()
	if err := conn.Read(rctx, room, seq); err != nil {
		b.log.Warn().Err(err).Msg("read position not moved")
	}
}

func (b *Bot) leave(ctx context.Context, conn *client.Conn, room, who string) {
	b.mu.Lock()
	p := b.placeLocked("room:" + room)
	p.answers.clear()
	if p.active != nil {
		p.active.cancel(fmt.Errorf("%w (%s asked me to leave)", errStopped, who))
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

// enqueue queues produce on the place's answer lane if the user is
// within their rate and fewer than QueueLength requests wait there; else
// refuse says why (on its own goroutine). Queued answers run one at a
// time, in order, each when one of the MaxGenerations slots is free.
func (b *Bot) enqueue(ctx context.Context, user, place string, produce func(context.Context, *generation), refuse func(string)) {
	b.mu.Lock()
	lim := b.limiters[user]
	if lim == nil {
		lim = rate.NewLimiter(b.cfg.UserRate, b.cfg.UserBurst)
		b.limiters[user] = lim
	}
	p := b.placeLocked(place)
	b.mu.Unlock()
	if !lim.Allow() {
		b.refuse(refuse, user+", you are asking faster than I answer; wait a few seconds and ask again.")
		return
	}
	if _, ok := p.answers.push(func() { b.run(ctx, p, place, produce) }, b.cfg.QueueLength); !ok {
		b.refuse(refuse, fmt.Sprintf("%s, %d questions are already waiting for an answer here; ask again once I have answered them.", user, b.cfg.QueueLength))
	}
}

func (b *Bot) refuse(refuse func(string), text string) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		refuse(text)
	}()
}

// run generates one answer on the place's answer lane, once a slot is
// free.
func (b *Bot) run(ctx context.Context, p *place, place string, produce func(context.Context, *generation)) {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-b.slots }()
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g := &generation{place: place, stream: uuid.NewString(), cancel: cancel}
	b.mu.Lock()
	p.active, b.byStream[g.stream] = g, g
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		p.active = nil
		delete(b.byStream, g.stream)
		b.mu.Unlock()
	}()
	produce(gctx, g)
}
