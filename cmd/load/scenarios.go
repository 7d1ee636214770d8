package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// loader holds what every scenario shares.
type loader struct {
	o        *options
	verify   func(protocol.Fingerprint) error
	pool     *keyPool
	progress io.Writer
}

// incoming is each load client's Messages capacity: room for bursts, so
// that a client of this tool is not the slow consumer.
const incoming = 4096

func (l *loader) config() client.Config {
	cfg := client.Config{URL: l.o.url, VerifyIdentity: l.verify, SessionKeyBits: l.o.keyBits, Incoming: incoming, HandshakeTimeout: 30 * time.Second}
	if l.pool != nil {
		cfg.SessionKey = l.pool.get()
	}
	return cfg
}

// bar draws a progress line on the progress writer until stop is called.
func (l *loader) bar(what string, total int, done *atomic.Int64) (stop func()) {
	start := time.Now()
	quit := make(chan struct{})
	finished := make(chan struct{})
	draw := func() {
		n := int(done.Load())
		rate := float64(n) / max(time.Since(start).Seconds(), 1e-9)
		if total <= 0 { // open-ended: a count, no bar
			fmt.Fprintf(l.progress, "\r%-10s %d %6.0f/s", what, n, rate)
			return
		}
		const width = 30
		fill := min(width, width*n/total)
		fmt.Fprintf(l.progress, "\r%-10s [%s%s] %d/%d %6.0f/s", what, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), n, total, rate)
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-quit:
				draw()
				fmt.Fprintln(l.progress)
				return
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// dialAll opens n messenger connections with the configured concurrency,
// calling setup on each; see dialEach.
func (l *loader) dialAll(ctx context.Context, what string, n int, setup func(context.Context, int, *client.Conn) error) ([]*client.Conn, *samples, *errorCounts, time.Duration) {
	return dialEach(ctx, l, what, n, func(ctx context.Context) (*client.Conn, error) { return client.Dial(ctx, l.config()) }, setup)
}

// dialTargets opens n connections to -target with the configured
// concurrency, calling setup on each; see dialEach.
func (l *loader) dialTargets(ctx context.Context, what string, n int, setup func(context.Context, int, loadConn) error) ([]loadConn, *samples, *errorCounts, time.Duration) {
	return dialEach(ctx, l, what, n, l.dial, setup)
}

// closer is a connection dialEach and closeAll handle: a *client.Conn or
// a loadConn.
type closer interface {
	comparable
	Close() error
}

// dialEach opens n connections with dial, -concurrency at once, calling
// setup on each (a join); it returns them in index order (nil where one
// failed), the dial+setup latencies, and the failures.
func dialEach[C closer](ctx context.Context, l *loader, what string, n int, dial func(context.Context) (C, error), setup func(context.Context, int, C) error) ([]C, *samples, *errorCounts, time.Duration) {
	conns := make([]C, n)
	lat := &samples{}
	errs := &errorCounts{}
	took := l.forEach(ctx, what, n, func(i int) {
		t0 := time.Now()
		c, err := dial(ctx)
		if err == nil && setup != nil {
			if err = setup(ctx, i, c); err != nil {
				c.Close()
			}
		}
		if err != nil {
			errs.add(err)
			return
		}
		lat.add(time.Since(t0))
		conns[i] = c
	})
	return conns, lat, errs, took
}

// forEach calls do(i) for i in 0..n-1, -concurrency calls at a time, with
// a progress bar named what counting finished calls; it hands out no new
// i once ctx is done, and returns how long it took.
func (l *loader) forEach(ctx context.Context, what string, n int, do func(i int)) time.Duration {
	var done atomic.Int64
	stop := l.bar(what, n, &done)
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range l.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				do(i)
				done.Add(1)
			}
		}()
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	stop()
	return took
}

// drain reads and drops what c receives until it closes, so that a held
// connection never becomes a slow consumer on this side.
func drain(c loadConn) {
	c.Receive(func(string, time.Time) {}, func(error) {})
}

func closeAll[C closer](conns []C) {
	var none C
	var wg sync.WaitGroup
	for _, c := range conns {
		if c != none {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
	}
	wg.Wait()
}

// ConnectResult is the connect scenario's outcome.
type ConnectResult struct {
	Opens            string         `json:"opens"`
	Attempted        int            `json:"attempted"`
	Established      int            `json:"established"`
	Resumed          int            `json:"resumed,omitempty"` // -connect-by resume: dials the server answered as resumed
	Concurrency      int            `json:"concurrency"`
	RoomSize         int            `json:"room_size"`
	Seconds          float64        `json:"seconds"`
	PerSecond        float64        `json:"per_second"`
	Latency          Percentiles    `json:"dial_and_join_latency"`
	Errors           map[string]int `json:"errors"`
	DroppedWhileIdle map[string]int `json:"dropped_while_idle"`
	ServerRSSBefore  int64          `json:"server_rss_before_kib"`
	ServerRSSAfter   int64          `json:"server_rss_after_kib"`
	KiBPerConn       float64        `json:"server_kib_per_connection"`
	MemoryBefore     memSample      `json:"server_memory_before"`
	MemoryAfter      memSample      `json:"server_memory_after"`
	HeapKiBPerConn   float64        `json:"server_heap_kib_per_connection,omitempty"`
}

// connect opens -conns connections (full handshake, then a join of a room
// of -room-size; with -target centrifugo the connect command, then a
// subscribe), holds them idle for -hold, and reads the server's memory.
func (l *loader) connect(ctx context.Context) (*ConnectResult, error) {
	o := l.o
	before, err := serverMemory(ctx, o)
	if err != nil {
		return nil, err
	}
	run := uuid.NewString()[:8]
	dial := l.dial
	var resumed atomic.Int64
	if o.connectBy == "resume" {
		if dial, err = l.resumer(ctx, o.conns, &resumed); err != nil {
			return nil, err
		}
	}
	conns, lat, errs, took := dialEach(ctx, l, "connect", o.conns, dial, func(ctx context.Context, i int, c loadConn) error {
		go drain(c)
		return c.Join(ctx, fmt.Sprintf("idle-%s-%d", run, i/o.roomSize))
	})
	defer closeAll(conns)
	r := &ConnectResult{Opens: l.opens(), Attempted: o.conns, Concurrency: o.concurrency, RoomSize: o.roomSize, Seconds: took.Seconds(), Latency: lat.percentiles(), Errors: errs.snapshot(), ServerRSSBefore: before.RSSKiB, MemoryBefore: before}
	for _, c := range conns {
		if c != nil {
			r.Established++
		}
	}
	r.PerSecond = float64(r.Established) / took.Seconds()
	r.Resumed = int(resumed.Load())
	select {
	case <-time.After(o.hold):
	case <-ctx.Done():
	}
	dropped := &errorCounts{}
	for _, c := range conns {
		if c == nil {
			continue
		}
		select {
		case <-c.Done():
			dropped.add(c.Err())
		default:
		}
	}
	r.DroppedWhileIdle = dropped.snapshot()
	if r.MemoryAfter, err = serverMemory(ctx, o); err != nil {
		return nil, err
	}
	r.ServerRSSAfter = r.MemoryAfter.RSSKiB
	if r.ServerRSSAfter > 0 && r.Established > 0 {
		r.KiBPerConn = float64(r.ServerRSSAfter-r.ServerRSSBefore) / float64(r.Established)
		if r.MemoryAfter.HeapInuseKiB > 0 {
			r.HeapKiBPerConn = float64(r.MemoryAfter.HeapInuseKiB-r.MemoryBefore.HeapInuseKiB) / float64(r.Established)
		}
	}
	return r, nil
}

func (r *ConnectResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n## connect: %d connections (%s of a %d-member room), %d in flight\n\n", r.Attempted, r.Opens, r.RoomSize, r.Concurrency)
	fmt.Fprintln(w, "| measure | value |\n|---|---|")
	fmt.Fprintf(w, "| established | %d of %d |\n", r.Established, r.Attempted)
	if r.Resumed > 0 {
		fmt.Fprintf(w, "| of them resumed | %d |\n", r.Resumed)
	}
	fmt.Fprintf(w, "| time to open all | %.1f s |\n", r.Seconds)
	fmt.Fprintf(w, "| connections per second | %.0f |\n", r.PerSecond)
	fmt.Fprintf(w, "| dial + join latency p50 / p90 / p99 / p99.9 / max (ms) | %s |\n", r.Latency)
	fmt.Fprintf(w, "| errors | %s |\n", formatErrors(r.Errors))
	fmt.Fprintf(w, "| dropped while idle | %s |\n", formatErrors(r.DroppedWhileIdle))
	if r.ServerRSSAfter > 0 {
		fmt.Fprintf(w, "| server RSS before / after | %d / %d KiB |\n", r.ServerRSSBefore, r.ServerRSSAfter)
		fmt.Fprintf(w, "| server memory per connection (RSS delta / established) | %.1f KiB |\n", r.KiBPerConn)
	}
	if r.MemoryAfter.HeapInuseKiB > 0 {
		fmt.Fprintf(w, "| server Go heap in use before / after (/metrics) | %d / %d KiB |\n", r.MemoryBefore.HeapInuseKiB, r.MemoryAfter.HeapInuseKiB)
		fmt.Fprintf(w, "| server heap per connection (heap delta / established) | %.1f KiB |\n", r.HeapKiBPerConn)
		fmt.Fprintf(w, "| server goroutines before / after | %d / %d |\n", r.MemoryBefore.Goroutines, r.MemoryAfter.Goroutines)
	}
}

// ResumeResult is the resume scenario's outcome.
type ResumeResult struct {
	Sessions    int            `json:"sessions"`
	Concurrency int            `json:"concurrency"`
	Resumed     int            `json:"resumed"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	Latency     Percentiles    `json:"latency"`
	Errors      map[string]int `json:"errors"`
	// CPU is what the storm cost the server (with -server-pid or
	// -metrics-url) and this tool in CPU time.
	CPU CPUCost `json:"cpu"`
}

// resume opens -concurrency sessions, closes their connections, and then
// resumes them over and over (resume-only handshakes, each connection
// closed at once) for -resume-for.
func (l *loader) resume(ctx context.Context) (*ResumeResult, error) {
	o := l.o
	conns, _, errs, _ := l.dialAll(ctx, "sessions", o.concurrency, nil)
	tickets := make([]client.Ticket, 0, len(conns))
	for _, c := range conns {
		if c != nil {
			tickets = append(tickets, c.Ticket())
		}
	}
	closeAll(conns)
	if len(tickets) == 0 {
		return nil, fmt.Errorf("no session could be opened: %s", formatErrors(errs.snapshot()))
	}
	r := &ResumeResult{Sessions: len(tickets), Concurrency: len(tickets)}
	lat := &samples{}
	rerrs := &errorCounts{}
	var done atomic.Int64
	meter := cpuMeter{o}
	before, err := meter.read(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, o.resumeFor)
	defer cancel()
	stop := l.bar("resume", 0, &done)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range tickets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			defer func() { lat.addAll(local) }()
			for rctx.Err() == nil {
				cfg := l.config()
				cfg.Resume, cfg.ResumeOnly = &tickets[i], true
				// A resume-only dial sends no session key, and the
				// connection is closed at once: no queue for pushes.
				cfg.SessionKey, cfg.Incoming = nil, 1
				t0 := time.Now()
				c, err := client.Dial(ctx, cfg)
				if err != nil {
					rerrs.add(err)
					continue
				}
				local = append(local, time.Since(t0))
				done.Add(1)
				tickets[i] = c.Ticket()
				c.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	after, err := meter.read(ctx)
	stop()
	if err != nil {
		return nil, err
	}
	r.Resumed, r.Seconds = int(done.Load()), took.Seconds()
	r.PerSecond = float64(r.Resumed) / took.Seconds()
	r.Latency, r.Errors = lat.percentiles(), rerrs.snapshot()
	r.CPU = cost(before, after, r.Resumed)
	return r, nil
}

func (r *ResumeResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n## resume: %d sessions resumed over and over, %d in flight\n\n", r.Sessions, r.Concurrency)
	fmt.Fprintln(w, "| measure | value |\n|---|---|")
	fmt.Fprintf(w, "| resumptions | %d in %.1f s |\n", r.Resumed, r.Seconds)
	fmt.Fprintf(w, "| resumptions per second | %.0f |\n", r.PerSecond)
	fmt.Fprintf(w, "| latency p50 / p90 / p99 / p99.9 / max (ms) | %s |\n", r.Latency)
	fmt.Fprintf(w, "| errors | %s |\n", formatErrors(r.Errors))
	r.CPU.printRows(w, "resumption")
}

// FanoutResult is one room size's fan-out outcome.
type FanoutResult struct {
	Members     int            `json:"members"`
	Joined      int            `json:"joined"`
	JoinSeconds float64        `json:"join_seconds"`
	JoinErrors  map[string]int `json:"join_errors"`
	Rounds      []*FanoutRound `json:"rounds"`
}

// FanoutRound is one publish rate held for -duration.
type FanoutRound struct {
	Rate          int            `json:"target_rate"`
	Sent          int            `json:"sent"`
	PublishRate   float64        `json:"publish_rate"`
	Expected      int64          `json:"expected_deliveries"`
	Delivered     int64          `json:"delivered"`
	DeliveryRate  float64        `json:"deliveries_per_second"`
	Latency       Percentiles    `json:"latency"`
	Disconnected  map[string]int `json:"disconnected"`
	ErrorAnswers  map[string]int `json:"error_answers"`
	PublisherLost bool           `json:"publisher_lost"`
	Held          bool           `json:"held_p99_under_50ms"`
	Histogram     []HistBin      `json:"latency_histogram"`
	Throughput    []float64      `json:"deliveries_per_second_by_100ms"`
}

// member is one fan-out client and what it received, per round.
type member struct {
	c   loadConn
	mu  sync.Mutex
	lat map[int][]time.Duration
	at  map[int][]time.Time // receipt times, for the throughput plot
	got map[int]int
}

// fanout fills one room of n members and publishes 256-byte (-size)
// messages from one of them at each -rates rate, measuring the time from
// the publisher's clock reading in the body to each member's receipt.
func (l *loader) fanout(ctx context.Context, n int) (*FanoutResult, error) {
	o := l.o
	room := "fan-" + uuid.NewString()[:8]
	members := make([]*member, n)
	errAnswers := &errorCounts{}
	var round atomic.Int64
	dead := make(chan int, n)
	conns, _, jerrs, took := l.dialTargets(ctx, fmt.Sprintf("join %d", n), n, func(ctx context.Context, i int, c loadConn) error {
		m := &member{c: c, lat: map[int][]time.Duration{}, at: map[int][]time.Time{}, got: map[int]int{}}
		members[i] = m
		go m.receive(errAnswers, dead, i)
		return c.Join(ctx, room)
	})
	defer closeAll(conns)
	res := &FanoutResult{Members: n, JoinSeconds: took.Seconds(), JoinErrors: jerrs.snapshot()}
	alive := map[int]bool{}
	for i, c := range conns {
		if c != nil {
			alive[i] = true
		}
	}
	res.Joined = len(alive)
	if !alive[0] {
		return res, nil
	}
	pub := conns[0]
	// Let the join presence notices settle before measuring.
	time.Sleep(2 * time.Second)
	reap := func() map[string]int {
		lost := &errorCounts{}
		for {
			select {
			case i := <-dead:
				if alive[i] {
					delete(alive, i)
					lost.add(conns[i].Err())
				}
			default:
				return lost.snapshot()
			}
		}
	}
	reap()
	for k, rate := range o.rates {
		if ctx.Err() != nil || !alive[0] {
			break
		}
		k++ // round numbers start at 1; 0 is "before any round"
		round.Store(int64(k))
		errAnswers.reset()
		r := &FanoutRound{Rate: rate}
		total := int(float64(rate) * o.duration.Seconds())
		pad := strings.Repeat("x", o.size)
		var done atomic.Int64
		stop := l.bar(fmt.Sprintf("%d/s", rate), total, &done)
		start := time.Now()
		interval := time.Second / time.Duration(rate)
		for i := range total {
			if due := start.Add(time.Duration(i) * interval); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
			head := strconv.Itoa(k) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":"
			if err := pub.Publish(room, head+pad[len(head):]); err != nil {
				break
			}
			r.Sent++
			done.Add(1)
		}
		sendTook := time.Since(start)
		stop()
		r.PublishRate = float64(r.Sent) / sendTook.Seconds()
		// Wait until every live member has everything, or -drain.
		deadline := time.Now().Add(o.drain)
		for time.Now().Before(deadline) {
			lost := reap()
			for code, c := range lost {
				if r.Disconnected == nil {
					r.Disconnected = map[string]int{}
				}
				r.Disconnected[code] += c
			}
			complete := true
			for i := range alive {
				members[i].mu.Lock()
				got := members[i].got[k]
				members[i].mu.Unlock()
				if got < r.Sent {
					complete = false
					break
				}
			}
			if complete {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		var all []time.Duration
		var at []time.Time
		for i, m := range members {
			if m == nil || conns[i] == nil {
				continue
			}
			m.mu.Lock()
			r.Delivered += int64(m.got[k])
			all = append(all, m.lat[k]...)
			at = append(at, m.at[k]...)
			delete(m.lat, k)
			delete(m.at, k)
			m.mu.Unlock()
		}
		r.Expected = int64(r.Sent) * int64(res.Joined)
		r.DeliveryRate = float64(r.Delivered) / sendTook.Seconds()
		r.Latency = percentilesOf(all)
		r.Histogram = latencyHistogram(all)
		r.Throughput = throughputSeries(start, at)
		r.ErrorAnswers = errAnswers.snapshot()
		r.PublisherLost = !alive[0]
		r.Held = r.Latency.N > 0 && r.Latency.P99 < 50 && r.Delivered == r.Expected && len(r.ErrorAnswers) == 0
		res.Rounds = append(res.Rounds, r)
		if len(r.Disconnected) > 0 || r.PublisherLost || r.Delivered < r.Expected {
			break // saturated: a higher rate says no more
		}
		time.Sleep(time.Second)
	}
	return res, nil
}

// receive records the latency of every round message m's connection gets
// and counts error answers; it reports i on dead when the connection ends.
func (m *member) receive(errAnswers *errorCounts, dead chan<- int, i int) {
	defer func() { dead <- i }()
	m.c.Receive(func(body string, now time.Time) {
		k, ts, ok := parseHead(body)
		if !ok {
			return
		}
		m.mu.Lock()
		m.lat[k] = append(m.lat[k], now.Sub(time.Unix(0, ts)))
		m.at[k] = append(m.at[k], now)
		m.got[k]++
		m.mu.Unlock()
	}, errAnswers.add)
}

// parseHead reads "round:unixnano:" at the start of a body.
func parseHead(body string) (round int, ts int64, ok bool) {
	a, rest, ok1 := strings.Cut(body, ":")
	b, _, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	k, err1 := strconv.Atoi(a)
	t, err2 := strconv.ParseInt(b, 10, 64)
	return k, t, err1 == nil && err2 == nil
}

func (r *FanoutResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n## fanout: one room of %d members (%d joined in %.1f s; join errors: %s), one publisher among them\n\n", r.Members, r.Joined, r.JoinSeconds, formatErrors(r.JoinErrors))
	fmt.Fprintln(w, "| target rate /s | sent | publish rate /s | delivered / expected | deliveries /s | latency p50 / p90 / p99 / p99.9 / max (ms) | disconnected | error answers | p99 < 50 ms, nothing lost |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.Rounds {
		disc := formatErrors(x.Disconnected)
		if x.PublisherLost {
			disc += " (the publisher too)"
		}
		fmt.Fprintf(w, "| %d | %d | %.0f | %d / %d | %.0f | %s | %s | %s | %v |\n", x.Rate, x.Sent, x.PublishRate, x.Delivered, x.Expected, x.DeliveryRate, x.Latency, disc, formatErrors(x.ErrorAnswers), yesNo(x.Held))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// resumer makes n sessions with full handshakes and closes them, untimed
// (a progress line says so), and returns a dial that resumes one of them
// per call, resume-only: connect's reconnect storm. It counts the dials
// the server answered as resumed in resumed.
func (l *loader) resumer(ctx context.Context, n int, resumed *atomic.Int64) (func(context.Context) (loadConn, error), error) {
	conns, _, errs, _ := l.dialAll(ctx, "sessions (untimed)", n, func(context.Context, int, *client.Conn) error { return nil })
	tickets := make(chan client.Ticket, n)
	for _, c := range conns {
		if c != nil {
			tickets <- c.Ticket()
		}
	}
	closeAll(conns)
	if len(tickets) < n {
		return nil, fmt.Errorf("-connect-by resume: %d of %d sessions made (%s)", len(tickets), n, formatErrors(errs.snapshot()))
	}
	return func(ctx context.Context) (loadConn, error) {
		select {
		case t := <-tickets:
			cfg := l.config()
			cfg.Resume, cfg.ResumeOnly = &t, true
			c, err := client.Dial(ctx, cfg)
			if err != nil {
				return nil, err
			}
			if c.Session().Resumed {
				resumed.Add(1)
			}
			return messengerConn{c}, nil
		default:
			return nil, errors.New("-connect-by resume: no session left to resume")
		}
	}, nil
}
