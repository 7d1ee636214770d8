package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// BotResult is the bot scenario's outcome: registered users in one or
// several rooms mention the server's bot (-bot NAME) at a rate, and each
// mention is followed to the bot's streamed answer (docs/protocol.md
// §8.6), to a refusal, or to nothing.
type BotResult struct {
	Bot          string         `json:"bot"`
	Users        int            `json:"users"`
	Rooms        int            `json:"rooms"`
	Ready        int            `json:"users_set_up"`
	SetupSeconds float64        `json:"setup_seconds_not_measured"`
	SetupErrors  map[string]int `json:"setup_errors"`
	Rate         float64        `json:"target_mentions_per_second"`
	Seconds      float64        `json:"seconds"`
	Sent         int64          `json:"mentions_sent"`
	SendErrors   map[string]int `json:"send_errors"`
	Answered     int64          `json:"answered"`
	// Refused counts the bot's refusals by reason: user_rate (the bot's
	// per-user rate), queue_full (QueueLength questions already waiting
	// in the room), other (a refusal this tool does not know).
	Refused map[string]int `json:"refused"`
	// Unanswered were neither answered nor refused within -bot-wait: the
	// bot dropped them (its intake of one room was full), its own answer
	// was refused by the server's limits, or they were lost.
	Unanswered int64          `json:"unanswered"`
	Duplicates int64          `json:"duplicate_answers"`
	Unmatched  int64          `json:"answers_naming_no_mention"`
	NoDelta    int64          `json:"answers_without_delta"`
	FirstDelta Percentiles    `json:"mention_to_first_delta"`
	Final      Percentiles    `json:"mention_to_final_answer"`
	EndReasons map[string]int `json:"stream_end_reasons"`
	// OtherBotMessages are the bot's messages that are neither an answer
	// nor a refusal addressed to one of the users.
	OtherBotMessages int64          `json:"other_bot_messages"`
	ErrorAnswers     map[string]int `json:"error_answers"`
	Disconnected     map[string]int `json:"disconnected"`
	FirstDeltaHist   []HistBin      `json:"first_delta_histogram"`
	FinalHist        []HistBin      `json:"final_answer_histogram"`
}

// mention is one mention sent, waiting for its outcome.
type mention struct {
	user     int
	sent     time.Time
	answered bool
}

// botRun is what one bot run's goroutines share.
type botRun struct {
	bot   string
	token *regexp.Regexp // a mention's token in an answer

	mu                          sync.Mutex
	mentions                    map[string]*mention // by token
	firstDelta, final           []time.Duration
	sent, answered, dups, unmat atomic.Int64
	noDelta, other              atomic.Int64
	refused, ends               tally
	sendErrs, errAnswers        errorCounts
}

// The bot's refusals (internal/bot enqueue), told apart by their text.
var refusalReasons = []struct{ text, reason string }{
	{"you are asking faster than I answer", "user_rate"},
	{"questions are already waiting for an answer here", "queue_full"},
}

// botLoad registers -bot-users accounts, puts them round robin in
// -bot-rooms new rooms (set-up, not measured), and has them mention the
// bot at -bot-rate in all for -bot-for, each mention carrying a token
// that the offline responder echoes in its answer. It then waits up to
// -bot-wait for every mention to be answered or refused.
func (l *loader) botLoad(ctx context.Context) (*BotResult, error) {
	o := l.o
	res := &BotResult{Bot: o.botName, Users: o.botUsers, Rooms: o.botRooms, Rate: o.botRate}
	ids, err := l.identityPool()
	if err != nil {
		return nil, err
	}
	setupStart := time.Now()
	run := uuid.NewString()[:8]
	names := make([]string, o.botUsers)
	for i := range names {
		names[i] = fmt.Sprintf("lb%s-%d", run, i)
	}
	accts, errs, _ := l.registerAccounts(ctx, "register", names, ids)
	defer func() {
		for _, a := range accts {
			if a != nil {
				a.c.Close()
			}
		}
	}()
	var users []int
	for i, a := range accts {
		if a == nil {
			continue
		}
		if len(users) == 0 {
			// The bot must exist, or mentions of it go nowhere.
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := a.c.Lookup(lctx, o.botName)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("look up the bot %q (is the server running with -bot %s?): %w", o.botName, o.botName, err)
			}
		}
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := a.c.Join(jctx, botRoom(run, i%o.botRooms), "")
		cancel()
		if err != nil {
			errs.add(err)
			continue
		}
		users = append(users, i)
	}
	res.Ready, res.SetupErrors = len(users), errs.snapshot()
	res.SetupSeconds = time.Since(setupStart).Seconds()
	if len(users) == 0 {
		return res, nil
	}

	r := &botRun{bot: o.botName, mentions: map[string]*mention{}, token: regexp.MustCompile(regexp.QuoteMeta("ask-"+run+"-") + `[0-9]+\.`)}
	var receivers sync.WaitGroup
	watched := map[int]bool{}
	for _, i := range users {
		room := i % o.botRooms
		watcher := !watched[room]
		watched[room] = true
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			r.receive(accts[i], i, watcher)
		}()
	}
	interval := time.Duration(float64(len(users)) / o.botRate * float64(time.Second))
	total := int(o.botRate * o.botFor.Seconds())
	var next, progress atomic.Int64
	stop := l.bar("mentions", total, &progress)
	start := time.Now()
	end := start.Add(o.botFor)
	var senders sync.WaitGroup
	for k, i := range users {
		senders.Add(1)
		go func() {
			defer senders.Done()
			first := start.Add(interval * time.Duration(k) / time.Duration(len(users)))
			for n := 0; ; n++ {
				due := first.Add(time.Duration(n) * interval)
				if !due.Before(end) || !sleepUntil(ctx, due) {
					return
				}
				if !r.mention(ctx, accts[i], i, botRoom(run, i%o.botRooms), fmt.Sprintf("ask-%s-%d.", run, next.Add(1))) {
					return
				}
				progress.Add(1)
			}
		}()
	}
	senders.Wait()
	res.Seconds = time.Since(start).Seconds()
	stop()
	deadline := time.Now().Add(o.botWait)
	for time.Now().Before(deadline) && ctx.Err() == nil && r.answered.Load()+int64(r.refused.total()) < r.sent.Load() {
		time.Sleep(20 * time.Millisecond)
	}

	dropped := &errorCounts{}
	for _, i := range users {
		select {
		case <-accts[i].c.Done():
			dropped.add(accts[i].c.Err())
		default:
		}
		accts[i].c.Close()
	}
	receivers.Wait()
	res.Disconnected = dropped.snapshot()
	res.Sent, res.Answered = r.sent.Load(), r.answered.Load()
	res.Refused, res.EndReasons = r.refused.snapshot(), r.ends.snapshot()
	res.Unanswered = max(0, res.Sent-res.Answered-int64(r.refused.total()))
	res.Duplicates, res.Unmatched, res.NoDelta, res.OtherBotMessages = r.dups.Load(), r.unmat.Load(), r.noDelta.Load(), r.other.Load()
	res.SendErrors, res.ErrorAnswers = r.sendErrs.snapshot(), r.errAnswers.snapshot()
	r.mu.Lock()
	res.FirstDelta, res.FirstDeltaHist = percentilesOf(r.firstDelta), latencyHistogram(r.firstDelta)
	res.Final, res.FinalHist = percentilesOf(r.final), latencyHistogram(r.final)
	r.mu.Unlock()
	return res, nil
}

func botRoom(run string, k int) string { return fmt.Sprintf("lb-%s-%d", run, k) }

// mention sends one mention of the bot carrying token, waiting for the
// server's ack. It reports false when a's connection has ended.
func (r *botRun) mention(ctx context.Context, a *account, user int, room, token string) bool {
	r.mu.Lock()
	r.mentions[token] = &mention{user: user, sent: time.Now()}
	r.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := a.c.Send(sctx, room, fmt.Sprintf("@%s %s What is the capital of France?", r.bot, token)); err != nil {
		r.mu.Lock()
		delete(r.mentions, token)
		r.mu.Unlock()
		r.sendErrs.add(err)
		return a.c.Err() == nil
	}
	r.sent.Add(1)
	return true
}

// receive follows the bot's streams and messages as user (a's account)
// sees them until a's connection closes; it counts the outcome of a's
// own mentions only, so that each is counted once however many members
// see it. A watcher (one user per room) also counts what concerns no
// user.
func (r *botRun) receive(a *account, user int, watcher bool) {
	type stream struct {
		firstDelta time.Time
		reason     string
	}
	streams := map[string]*stream{}
	get := func(id string) *stream {
		s := streams[id]
		if s == nil {
			s = &stream{}
			streams[id] = s
		}
		return s
	}
	me := a.id.User + ", "
	for m := range a.c.Messages() {
		now := time.Now()
		switch {
		case m.Type == protocol.MsgError:
			r.errAnswers.add(&protocol.PeerError{Code: m.Code, Reason: m.Error})
		case m.From != r.bot:
		case m.Type == protocol.MsgStream:
			s := get(m.Stream)
			switch m.Event {
			case protocol.StreamDelta:
				if s.firstDelta.IsZero() {
					s.firstDelta = now
				}
			case protocol.StreamEnd:
				s.reason = m.Reason
			}
		case m.Type == protocol.MsgMessage && m.Stream != "":
			s := get(m.Stream)
			delete(streams, m.Stream)
			r.answer(m.Body, user, watcher, s.firstDelta, s.reason, now)
		case m.Type == protocol.MsgMessage:
			reason := ""
			for _, x := range refusalReasons {
				if strings.Contains(m.Body, x.text) {
					reason = x.reason
				}
			}
			switch mine := strings.HasPrefix(m.Body, me); {
			case mine && reason == "":
				r.refused.add("other")
			case mine:
				r.refused.add(reason)
			case reason == "" && watcher:
				r.other.Add(1)
			}
		}
	}
}

// answer records a final answer received by user at now, whose stream's
// first delta came at firstDelta (zero: none) and ended for reason, if it
// answers one of user's mentions.
func (r *botRun) answer(body string, user int, watcher bool, firstDelta time.Time, reason string, now time.Time) {
	token := r.token.FindString(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.mentions[token]
	switch {
	case m == nil:
		if watcher {
			r.unmat.Add(1)
		}
		return
	case m.user != user:
		return
	case m.answered:
		r.dups.Add(1)
		return
	}
	m.answered = true
	r.answered.Add(1)
	r.final = append(r.final, now.Sub(m.sent))
	if reason == "" {
		reason = "no end event"
	}
	r.ends.add(reason)
	if !firstDelta.IsZero() {
		r.firstDelta = append(r.firstDelta, firstDelta.Sub(m.sent))
	} else {
		r.noDelta.Add(1)
	}
}

func (r *BotResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n## bot: %d registered users in %d rooms mention @%s, %g mentions/s in all for %.1f s\n\n", r.Users, r.Rooms, r.Bot, r.Rate, r.Seconds)
	fmt.Fprintf(w, "Set-up (registering %d accounts, Argon2id on the server, and joining the rooms) took %.1f s and is not measured.\n\n", r.Users, r.SetupSeconds)
	fmt.Fprintln(w, "| measure | value |\n|---|---|")
	fmt.Fprintf(w, "| users set up | %d of %d (errors: %s) |\n", r.Ready, r.Users, formatErrors(r.SetupErrors))
	fmt.Fprintf(w, "| mentions sent (acknowledged by the server) | %d |\n", r.Sent)
	fmt.Fprintf(w, "| answered (a stored answer naming the mention) | %d of %d |\n", r.Answered, r.Sent)
	fmt.Fprintf(w, "| refused by the bot (user_rate: its per-user rate; queue_full: questions already waiting in the room) | %s |\n", formatErrors(r.Refused))
	fmt.Fprintf(w, "| neither answered nor refused within -bot-wait (dropped by the bot or the server's limits, or lost) | %d |\n", r.Unanswered)
	fmt.Fprintf(w, "| mention → first streamed delta p50 / p90 / p99 / p99.9 / max (ms) | %s |\n", r.FirstDelta)
	fmt.Fprintf(w, "| mention → final answer p50 / p90 / p99 / p99.9 / max (ms) | %s |\n", r.Final)
	fmt.Fprintf(w, "| answers whose stream showed no delta | %d |\n", r.NoDelta)
	fmt.Fprintf(w, "| stream end reasons | %s |\n", formatErrors(r.EndReasons))
	fmt.Fprintf(w, "| duplicate answers / answers naming no mention of this run / other bot messages | %d / %d / %d |\n", r.Duplicates, r.Unmatched, r.OtherBotMessages)
	fmt.Fprintf(w, "| send errors | %s |\n", formatErrors(r.SendErrors))
	fmt.Fprintf(w, "| error answers | %s |\n", formatErrors(r.ErrorAnswers))
	fmt.Fprintf(w, "| connections dropped | %s |\n", formatErrors(r.Disconnected))
}

// htmlRound is the bot run's section of the HTML report.
func (r *BotResult) htmlRound() reportRound {
	return reportRound{
		Heading: fmt.Sprintf("bot: %d users in %d rooms, %g mentions/s", r.Ready, r.Rooms, r.Rate),
		Summary: fmt.Sprintf("%d of %d mentions answered, refused: %s, unanswered: %d; mention → first delta %s ms, → final answer %s ms. Set-up not measured.",
			r.Answered, r.Sent, formatErrors(r.Refused), r.Unanswered, r.FirstDelta, r.Final),
		Latency:    histogramPlot("mention → first streamed delta", r.FirstDeltaHist, "answers"),
		Throughput: histogramPlot("mention → final answer", r.FinalHist, "answers"),
	}
}
