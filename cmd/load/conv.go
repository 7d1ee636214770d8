package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// account is one registered load user: its logged-in connection and its
// device's identity.
type account struct {
	c  *client.Conn
	id *client.Identity
}

// registerAccounts dials one connection per name, -concurrency at a time,
// and registers the account name on it with identity keys from ids (two
// per account, round robin) and a random password. It returns the
// accounts in name order (nil where one failed), the failures and how
// long it took. Registration is slow by design (Argon2id on the server):
// callers do it before anything they measure.
func (l *loader) registerAccounts(ctx context.Context, what string, names []string, ids *keyPool) ([]*account, *errorCounts, time.Duration) {
	accts := make([]*account, len(names))
	errs := &errorCounts{}
	took := l.forEach(ctx, what, len(names), func(i int) {
		a, err := l.register(ctx, names[i], ids)
		if err != nil {
			errs.add(err)
			return
		}
		accts[i] = a
	})
	return accts, errs, took
}

// register dials and registers one account.
func (l *loader) register(ctx context.Context, name string, ids *keyPool) (*account, error) {
	c, err := client.Dial(ctx, l.config())
	if err != nil {
		return nil, err
	}
	sign, enc := ids.get(), ids.get()
	for enc == sign { // other goroutines draw from the pool too
		enc = ids.get()
	}
	id := &client.Identity{User: name, Device: uuid.New(), Signing: sign, Encryption: enc, DeviceName: "load"}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		c.Close()
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Register(rctx, id, hex.EncodeToString(pw)); err != nil {
		c.Close()
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return &account{c: c, id: id}, nil
}

// identityPool generates the identity keys of the accounts a scenario
// registers (-identity-keys of -identity-bits), before anything is
// measured. Accounts share them round robin: harmless for a load test
// (each device still has its own id and fingerprint), never for people.
func (l *loader) identityPool() (*keyPool, error) {
	n := max(l.o.identityKeys, 2) // signing and encryption keys differ
	fmt.Fprintf(l.progress, "generating %d RSA-%d identity keys…\n", n, l.o.identityBits)
	return newKeyPool(n, l.o.identityBits)
}

// tally counts outcomes by name from many goroutines.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(key string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[key]++
	t.mu.Unlock()
}

func (t *tally) snapshot() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.m {
		n += v
	}
	return n
}

// e2eErrors are pkg/e2e's failures, named in the report by their text.
var e2eErrors = []error{
	e2e.ErrMalformed, e2e.ErrUnsupportedFormat, e2e.ErrUnsupportedSuite, e2e.ErrTooManyRecipients,
	e2e.ErrBadDevice, e2e.ErrBadKey, e2e.ErrWrongDevice, e2e.ErrBadSignature, e2e.ErrWrongConversation,
	e2e.ErrNotARecipient, e2e.ErrUnwrap, e2e.ErrKeyConflict, e2e.ErrUnknownKeyVersion, e2e.ErrUnknownDevice,
	e2e.ErrSuiteMismatch, e2e.ErrBadAD, e2e.ErrBadPlaintext, e2e.ErrReplay, e2e.ErrStaleCounter,
}

// failureName names err by its pkg/e2e failure, else by its protocol
// code ("other" for neither).
func failureName(err error) string {
	for _, e := range e2eErrors {
		if errors.Is(err, e) {
			return strings.TrimPrefix(e.Error(), "e2e: ")
		}
	}
	if c := protocol.CodeOf(err); c != protocol.CodeInternal {
		return c.String()
	}
	return "other"
}

// Heads of the conv scenario's texts ("dir:unixnano:", parseHead): a
// message from A to B, and B's answer.
const (
	convToB   = 1
	convReply = 2
)

// ConvResult is the conv scenario's outcome: P pairs of registered
// users, each A sending to its B in their end-to-end conversation (the
// server relays and stores records it cannot read), B answering each
// message when Replies is set.
type ConvResult struct {
	Pairs        int            `json:"pairs"`
	Ready        int            `json:"pairs_set_up"`
	SetupSeconds float64        `json:"setup_seconds_not_measured"`
	SetupErrors  map[string]int `json:"setup_errors"`
	Rate         float64        `json:"target_rate_per_pair"`
	Replies      bool           `json:"b_answers_each_message"`
	Size         int            `json:"text_bytes"`
	Seconds      float64        `json:"seconds"`
	SentToB      int64          `json:"sent_a_to_b"`
	SentReplies  int64          `json:"sent_b_to_a"`
	Expected     int64          `json:"expected"`
	Delivered    int64          `json:"delivered"`
	Duplicates   int64          `json:"duplicates"`
	DeliveryRate float64        `json:"deliveries_per_second"`
	Latency      Percentiles    `json:"latency"`
	AckLatency   Percentiles    `json:"ack_latency"`
	SendErrors   map[string]int `json:"send_errors"`
	OpenErrors   map[string]int `json:"open_errors"`
	ErrorAnswers map[string]int `json:"error_answers"`
	Disconnected map[string]int `json:"disconnected"`
	Histogram    []HistBin      `json:"latency_histogram"`
	Throughput   []float64      `json:"deliveries_per_second_by_100ms"`
}

// convUser is one side of a pair.
type convUser struct {
	*account
	cv      *client.Conversation
	replies chan struct{} // B: one per message to answer
	gone    chan struct{} // closed when its receiver has returned
}

// convRun is what one conv run's goroutines share.
type convRun struct {
	l     *loader
	pad   string
	reply bool
	start time.Time
	quit  chan struct{} // closed when the run is over

	mu  sync.Mutex
	lat []time.Duration
	at  []time.Time

	ack                           samples
	sentToB, sentReplies          atomic.Int64
	gotToB, gotReplies, repliedTo atomic.Int64
	duplicates                    atomic.Int64
	sendErrs, openErrs            tally
	errAnswers                    errorCounts
}

// conv registers 2×-pairs accounts, opens each pair's conversation (all
// set-up, not measured), then has every A send -size-byte texts to its B
// at -conv-rate for -conv-for (and, with -conv-reply, B answer each
// one), and waits up to -drain for every delivery. Latency runs from the
// sender's clock reading inside the encrypted text, taken before it
// seals, to the receiver's clock after it has verified and decrypted the
// record.
func (l *loader) conv(ctx context.Context) (*ConvResult, error) {
	o := l.o
	res := &ConvResult{Pairs: o.pairs, Rate: o.convRate, Replies: o.convReply, Size: o.size}
	ids, err := l.identityPool()
	if err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp("", "load-conv-")
	if err != nil {
		return nil, fmt.Errorf("load: conversation state: %w", err)
	}
	defer os.RemoveAll(state)

	setupStart := time.Now()
	run := uuid.NewString()[:8]
	names := make([]string, 2*o.pairs)
	for i := range o.pairs {
		names[2*i] = fmt.Sprintf("lc%s-%da", run, i)
		names[2*i+1] = fmt.Sprintf("lc%s-%db", run, i)
	}
	accts, errs, _ := l.registerAccounts(ctx, "register", names, ids)
	defer func() {
		for _, a := range accts {
			if a != nil {
				a.c.Close()
			}
		}
	}()
	pairs := l.openConversations(ctx, accts, state, errs)
	res.Ready, res.SetupErrors = len(pairs), errs.snapshot()
	res.SetupSeconds = time.Since(setupStart).Seconds()
	if len(pairs) == 0 {
		return res, nil
	}

	r := &convRun{l: l, pad: strings.Repeat("x", o.size), reply: o.convReply, quit: make(chan struct{})}
	for _, p := range pairs {
		go r.receive(ctx, p[0])
		go r.receive(ctx, p[1])
	}
	var repliers sync.WaitGroup
	if r.reply {
		for _, p := range pairs {
			repliers.Add(1)
			go func() {
				defer repliers.Done()
				r.answer(ctx, p[1])
			}()
		}
	}
	interval := time.Duration(float64(time.Second) / o.convRate)
	total := int64(float64(len(pairs)) * o.convRate * o.convFor.Seconds())
	var progress atomic.Int64
	stop := l.bar("conv", int(total), &progress)
	r.start = time.Now()
	end := r.start.Add(o.convFor)
	var senders sync.WaitGroup
	for i, p := range pairs {
		senders.Add(1)
		go func() {
			defer senders.Done()
			// Spread the pairs' sends over one interval.
			first := r.start.Add(interval * time.Duration(i) / time.Duration(len(pairs)))
			for k := 0; ; k++ {
				due := first.Add(time.Duration(k) * interval)
				if !due.Before(end) || ctx.Err() != nil {
					return
				}
				if !sleepUntil(ctx, due) || !r.send(ctx, p[0], convToB) {
					return
				}
				progress.Add(1)
			}
		}()
	}
	senders.Wait()
	sendTook := time.Since(r.start)
	stop()
	deadline := time.Now().Add(o.drain)
	for time.Now().Before(deadline) && ctx.Err() == nil && !r.complete() {
		time.Sleep(20 * time.Millisecond)
	}
	close(r.quit)
	repliers.Wait()
	res.Seconds = sendTook.Seconds()

	dropped := &errorCounts{}
	for _, p := range pairs {
		for _, u := range p {
			select {
			case <-u.c.Done():
				dropped.add(u.c.Err())
			default:
			}
			u.c.Close()
		}
	}
	for _, p := range pairs {
		<-p[0].gone
		<-p[1].gone
	}
	res.Disconnected = dropped.snapshot()
	res.SentToB, res.SentReplies = r.sentToB.Load(), r.sentReplies.Load()
	res.Expected = res.SentToB + res.SentReplies
	res.Delivered = r.gotToB.Load() + r.gotReplies.Load()
	res.Duplicates = r.duplicates.Load()
	r.mu.Lock()
	res.Latency = percentilesOf(r.lat)
	res.Histogram = latencyHistogram(r.lat)
	res.Throughput = throughputSeries(r.start, r.at)
	if n := len(r.at); n > 0 {
		// Over the span in which deliveries arrived, from the first send.
		span := max(slices.MaxFunc(r.at, func(a, b time.Time) int { return a.Compare(b) }).Sub(r.start), sendTook)
		res.DeliveryRate = float64(n) / span.Seconds()
	}
	r.mu.Unlock()
	res.AckLatency = r.ack.percentiles()
	res.SendErrors, res.OpenErrors, res.ErrorAnswers = r.sendErrs.snapshot(), r.openErrs.snapshot(), r.errAnswers.snapshot()
	return res, nil
}

// openConversations pairs accts (A, B, A, B, …) and opens each pair's
// conversation on both sides, -concurrency pairs at a time: A first
// (it makes key version 1), then B. Counters are kept in state, as a
// real client keeps them, so that neither side rotates the key each time
// it sees one the other made. Failures are added to errs.
func (l *loader) openConversations(ctx context.Context, accts []*account, state string, errs *errorCounts) [][2]*convUser {
	var mu sync.Mutex
	var pairs [][2]*convUser
	l.forEach(ctx, "open", len(accts)/2, func(i int) {
		a, b := accts[2*i], accts[2*i+1]
		if a == nil || b == nil {
			return // its registration failure is counted already
		}
		p, err := openPair(ctx, a, b, state)
		if err != nil {
			errs.add(err)
			return
		}
		mu.Lock()
		pairs = append(pairs, p)
		mu.Unlock()
	})
	return pairs
}

func openPair(ctx context.Context, a, b *account, state string) ([2]*convUser, error) {
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var p [2]*convUser
	for i, side := range [2][2]*account{{a, b}, {b, a}} {
		cv, err := side[0].c.OpenConversation(octx, side[0].id, side[1].id.User, client.ConversationOptions{StateDir: state})
		if err != nil {
			return p, fmt.Errorf("open the conversation of %s with %s: %w", side[0].id.User, side[1].id.User, err)
		}
		p[i] = &convUser{account: side[0], cv: cv, gone: make(chan struct{})}
	}
	p[1].replies = make(chan struct{}, 1<<16)
	return p, nil
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// send seals a text headed dir and the current time and sends it,
// waiting for the ack (after the commit). It reports false when u's
// connection has ended.
func (r *convRun) send(ctx context.Context, u *convUser, dir int) bool {
	head := strconv.Itoa(dir) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sealed, err := u.cv.Seal(sctx, head+r.pad[min(len(head), len(r.pad)):])
	if err != nil {
		r.sendErrs.add(failureName(err))
		return u.c.Err() == nil
	}
	t0 := time.Now()
	if _, err := u.cv.Send(sctx, sealed); err != nil {
		r.sendErrs.add(failureName(err))
		return u.c.Err() == nil
	}
	r.ack.add(time.Since(t0))
	if dir == convToB {
		r.sentToB.Add(1)
	} else {
		r.sentReplies.Add(1)
	}
	return true
}

// answer sends B's answers, one per message received, until quit.
func (r *convRun) answer(ctx context.Context, u *convUser) {
	for {
		select {
		case <-u.replies:
			r.send(ctx, u, convReply)
			r.repliedTo.Add(1)
		case <-r.quit:
			return
		}
	}
}

// receive opens what u's connection receives until it closes: each
// record is verified and decrypted (pkg/client, pkg/e2e) and its latency
// taken after that.
func (r *convRun) receive(ctx context.Context, u *convUser) {
	defer close(u.gone)
	for m := range u.c.Messages() {
		switch {
		case client.IsConversationEvent(m):
			got, err := u.cv.Receive(ctx, m)
			now := time.Now()
			if err != nil {
				r.openErrs.add(failureName(err))
				continue
			}
			if got == nil {
				if m.Type == protocol.MsgConvMsg {
					r.duplicates.Add(1) // the replay guard has seen it
				}
				continue
			}
			dir, ts, ok := parseHead(got.Text)
			if !ok || (dir != convToB && dir != convReply) {
				r.openErrs.add("unexpected text")
				continue
			}
			r.mu.Lock()
			r.lat = append(r.lat, now.Sub(time.Unix(0, ts)))
			r.at = append(r.at, now)
			r.mu.Unlock()
			if dir == convReply {
				r.gotReplies.Add(1)
				continue
			}
			r.gotToB.Add(1)
			if r.reply && u.replies != nil {
				select {
				case u.replies <- struct{}{}:
				case <-r.quit:
				}
			}
		case m.Type == protocol.MsgError:
			r.errAnswers.add(&protocol.PeerError{Code: m.Code, Reason: m.Error})
		}
	}
}

// complete reports whether everything sent has arrived (and, with
// replies, been answered and the answers arrived).
func (r *convRun) complete() bool {
	toB := r.gotToB.Load()
	if toB < r.sentToB.Load() {
		return false
	}
	return !r.reply || (r.repliedTo.Load() >= toB && r.gotReplies.Load() >= r.sentReplies.Load())
}

func (r *ConvResult) print(w io.Writer) {
	dir := "one direction: B does not answer"
	if r.Replies {
		dir = "B answers each message it receives"
	}
	fmt.Fprintf(w, "\n## conv: %d pairs of registered users in end-to-end conversations, each A sending %g/s to its B for %.1f s (%s), %d-byte texts\n\n", r.Pairs, r.Rate, r.Seconds, dir, r.Size)
	fmt.Fprintf(w, "Set-up (registering %d accounts, Argon2id on the server, and opening the conversations) took %.1f s and is not measured.\n\n", 2*r.Pairs, r.SetupSeconds)
	fmt.Fprintln(w, "| measure | value |\n|---|---|")
	fmt.Fprintf(w, "| pairs set up | %d of %d (errors: %s) |\n", r.Ready, r.Pairs, formatErrors(r.SetupErrors))
	fmt.Fprintf(w, "| messages sent and acknowledged, A→B / B→A | %d / %d |\n", r.SentToB, r.SentReplies)
	fmt.Fprintf(w, "| delivered (verified and decrypted) / expected | %d / %d |\n", r.Delivered, r.Expected)
	fmt.Fprintf(w, "| duplicates (refused by the replay guard) | %d |\n", r.Duplicates)
	fmt.Fprintf(w, "| deliveries per second | %.0f |\n", r.DeliveryRate)
	fmt.Fprintf(w, "| delivery latency p50 / p90 / p99 / p99.9 / max (ms), sender's clock in the encrypted text → receiver after decrypting | %s |\n", r.Latency)
	fmt.Fprintf(w, "| ack latency p50 / p90 / p99 / p99.9 / max (ms), conv_send → ack after the commit | %s |\n", r.AckLatency)
	fmt.Fprintf(w, "| send errors | %s |\n", formatErrors(r.SendErrors))
	fmt.Fprintf(w, "| records that failed to open | %s |\n", formatErrors(r.OpenErrors))
	fmt.Fprintf(w, "| error answers | %s |\n", formatErrors(r.ErrorAnswers))
	fmt.Fprintf(w, "| connections dropped | %s |\n", formatErrors(r.Disconnected))
}

// htmlRound is the conv run's section of the HTML report.
func (r *ConvResult) htmlRound() reportRound {
	return reportRound{
		Heading: fmt.Sprintf("conv: %d pairs, %g messages/s per pair", r.Ready, r.Rate),
		Summary: fmt.Sprintf("%d of %d delivered end to end, %.0f deliveries/s; latency p50 / p90 / p99 / p99.9 / max %s ms; acks %s ms. Set-up not measured.",
			r.Delivered, r.Expected, r.DeliveryRate, r.Latency, r.AckLatency),
		Latency:    histogramPlot("delivery latency (sender's clock → receiver after decrypting)", r.Histogram, "deliveries"),
		Throughput: throughputPlot(r.Throughput),
	}
}

// histogramPlot draws bins with the report's helpers.
func histogramPlot(title string, bins []HistBin, what string) plot {
	v := make([]float64, len(bins))
	for i, b := range bins {
		v[i] = float64(b.Count)
	}
	return barPlot(title, "latency (ms, logarithmic bins)", what, v, func(i int) string { return fmt.Sprintf("%.3g", bins[i].From) }, 2)
}

// throughputPlot draws a deliveries-per-second series of 100 ms steps.
func throughputPlot(s []float64) plot {
	return barPlot("deliveries per second over time", "seconds since the run began (100 ms bars)", "deliveries/s", s,
		func(i int) string { return fmt.Sprintf("%.1f", float64(i)/10) }, max(len(s)/8, 1))
}
