// Package metrics is the messenger server's Prometheus instrumentation:
// one Metrics value owns a registry with every series the server exports,
// and offers one method per event so that the code it instruments stays a
// single call. Every method is safe on a nil *Metrics (it does nothing),
// so a server built without metrics needs no checks.
//
// Labels take values from small fixed sets only (protocol code names,
// rate-limit kinds, Redis command names): never a user, room or address.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Namespace prefixes every series name.
const Namespace = "messenger"

// Metrics holds the server's series. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	connsOpen      prometheus.Gauge
	connsTotal     prometheus.Counter
	closes         *prometheus.CounterVec
	slowConsumers  prometheus.Counter
	handshakes     *prometheus.CounterVec
	handshakeTime  *prometheus.HistogramVec
	messages       *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	queueDrops     *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	replays        prometheus.Counter
	rateLimited    *prometheus.CounterVec
	redisTime      *prometheus.HistogramVec
	redisErrors    *prometheus.CounterVec
	dbTime         prometheus.Histogram
	dbErrors       prometheus.Counter
	gapsFilled     prometheus.Counter
	gapMessages    prometheus.Counter
	botGenerations *prometheus.CounterVec
	botTime        prometheus.Histogram
	draining       prometheus.Gauge
}

// New returns Metrics registered in a registry of their own, together
// with the Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
		f(c)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
		f(c)
		return c
	}
	// Latency buckets from 0.5 ms to about 8 s: Redis and database calls
	// are sub-millisecond when healthy and time out after seconds.
	latency := prometheus.ExponentialBuckets(0.0005, 2, 15)

	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "connections",
		Help: "Established connections (past the handshake) open on this node."})
	f(m.connsOpen)
	m.connsTotal = counter("connections_total", "Connections established (past the handshake).")
	m.closes = counterVec("connection_closes_total", "Connections the server closed with an error code, by code.", "code")
	m.slowConsumers = counter("slow_consumers_total", "Connections closed because their send queue was full (slow_consumer).")
	m.handshakes = counterVec("handshakes_total", "Handshakes by result: full, resumed, or the code of the failure (abandoned: the client went away).", "result")
	m.handshakeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "handshake_duration_seconds",
		Help:    "Time from the WebSocket upgrade to the end of the handshake, by outcome (full, resumed, failed).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"outcome"})
	f(m.handshakeTime)
	m.messages = counterVec("messages_total", "Encrypted application records, by direction (in: from clients, out: to clients).", "direction")
	m.bytes = counterVec("bytes_total", "Bytes of encrypted application records (WebSocket payloads), by direction.", "direction")
	m.queueDrops = counterVec("queue_drops_total", "Messages not delivered to a connection, by reason: queue_full (the connection is then closed as a slow consumer), unsealable (too large to seal), catchup_overflow (live messages over the catch-up buffer; they are resent from the store).", "reason")
	m.rejected = counterVec("requests_rejected_total", "Requests answered with an error, by code.", "code")
	m.replays = counter("replays_rejected_total", "Requests refused because their message id was already used (replayed_id).")
	m.rateLimited = counterVec("rate_limited_total", "Requests and handshakes refused by a rate limit, by kind.", "kind")
	m.redisTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "redis_command_duration_seconds",
		Help: "Redis commands (pipelines count once, as \"pipeline\"), by command.", Buckets: latency}, []string{"command"})
	f(m.redisTime)
	m.redisErrors = counterVec("redis_errors_total", "Redis commands that failed (a missing key is not a failure), by command.", "command")
	m.dbTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "db_query_duration_seconds",
		Help: "PostgreSQL queries.", Buckets: latency})
	f(m.dbTime)
	m.dbErrors = counter("db_errors_total", "PostgreSQL queries that failed (no rows is not a failure).")
	m.gapsFilled = counter("broker_gaps_filled_total", "Gaps in a room's broker traffic that were filled from the store.")
	m.gapMessages = counter("broker_gap_messages_total", "Messages delivered from the store to fill broker gaps.")
	m.botGenerations = counterVec("bot_generations_total", "Bot replies generated, by result (ok, error).", "result")
	m.botTime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "bot_generation_duration_seconds",
		Help: "Time a bot reply took to generate.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)})
	f(m.botTime)
	m.draining = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "draining",
		Help: "1 while this node drains (stops accepting and closes its connections with going_away), else 0."})
	f(m.draining)

	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for tests and further collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format. A nil
// *Metrics serves 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// codeLabel is c's name, or "other" for a number the protocol does not
// define (a peer's alert may carry any 16-bit value; labels stay few).
func codeLabel(c protocol.Code) string {
	s := c.String()
	if strings.HasPrefix(s, "code_") {
		return "other"
	}
	return s
}

// ConnOpened counts an established connection.
func (m *Metrics) ConnOpened() {
	if m == nil {
		return
	}
	m.connsOpen.Inc()
	m.connsTotal.Inc()
}

// ConnEnded counts the end of a connection ConnOpened counted.
func (m *Metrics) ConnEnded() {
	if m == nil {
		return
	}
	m.connsOpen.Dec()
}

// Closed counts a connection the server closes with code (0: without an
// error, not counted).
func (m *Metrics) Closed(code protocol.Code) {
	if m == nil || code == 0 {
		return
	}
	m.closes.WithLabelValues(codeLabel(code)).Inc()
	if code == protocol.CodeSlowConsumer {
		m.slowConsumers.Inc()
	}
}

// HandshakeDone counts a handshake that succeeded after d.
func (m *Metrics) HandshakeDone(resumed bool, d time.Duration) {
	if m == nil {
		return
	}
	outcome := "full"
	if resumed {
		outcome = "resumed"
	}
	m.handshakes.WithLabelValues(outcome).Inc()
	m.handshakeTime.WithLabelValues(outcome).Observe(d.Seconds())
}

// HandshakeFailed counts a handshake (or a connection refused before it)
// that failed with code after d.
func (m *Metrics) HandshakeFailed(code protocol.Code, d time.Duration) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(codeLabel(code)).Inc()
	m.handshakeTime.WithLabelValues("failed").Observe(d.Seconds())
}

// HandshakeAbandoned counts a handshake the client walked away from.
func (m *Metrics) HandshakeAbandoned(d time.Duration) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues("abandoned").Inc()
	m.handshakeTime.WithLabelValues("failed").Observe(d.Seconds())
}

// RecordIn counts a record of n bytes received from a client.
func (m *Metrics) RecordIn(n int) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues("in").Inc()
	m.bytes.WithLabelValues("in").Add(float64(n))
}

// RecordOut counts a record of n bytes written to a client.
func (m *Metrics) RecordOut(n int) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues("out").Inc()
	m.bytes.WithLabelValues("out").Add(float64(n))
}

// The reasons QueueDrop takes.
const (
	DropQueueFull       = "queue_full"
	DropUnsealable      = "unsealable"
	DropCatchUpOverflow = "catchup_overflow"
)

// QueueDrop counts a message not delivered to one connection.
func (m *Metrics) QueueDrop(reason string) {
	if m == nil {
		return
	}
	m.queueDrops.WithLabelValues(reason).Inc()
}

// Rejected counts a request answered with an error carrying code.
func (m *Metrics) Rejected(code protocol.Code) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(codeLabel(code)).Inc()
	if code == protocol.CodeReplayedID {
		m.replays.Inc()
	}
}

// The kinds RateLimited takes.
const (
	KindHandshake    = "handshake"     // -handshake-rate, per address
	KindConnRequests = "conn_requests" // -request-rate, per connection
	KindUserRequests = "user_requests" // -user-request-rate, per user
	KindSend         = "send"          // -send-rate, per user or anonymous address
	KindRoomSend     = "room_send"     // -room-send-rate, per room
	KindLogin        = "login"         // failed-login limits
	KindRegister     = "register"      // -register-per-addr
	KindOther        = "other"
)

// RateKind maps a rate-limit bucket key (its prefix, "hs:addr:…",
// "send:room:…") to its kind.
func RateKind(key string) string {
	for _, k := range []struct{ prefix, kind string }{
		{"hs:", KindHandshake},
		{"req:user:", KindUserRequests},
		{"send:room:", KindRoomSend},
		{"send:", KindSend},
	} {
		if strings.HasPrefix(key, k.prefix) {
			return k.kind
		}
	}
	return KindOther
}

// RateLimited counts a request or handshake refused by a rate limit of
// kind (one of the Kind constants).
func (m *Metrics) RateLimited(kind string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(kind).Inc()
}

// GapFilled counts a gap in a room's broker traffic that was filled from
// the store with n messages. It is the hook for the code that detects
// gaps (sequence numbers that skip) and fills them.
func (m *Metrics) GapFilled(n int) {
	if m == nil {
		return
	}
	m.gapsFilled.Inc()
	m.gapMessages.Add(float64(n))
}

// BotGeneration counts one bot reply generated in d; err is the
// generation's failure, nil on success. It is the hook for the bot.
func (m *Metrics) BotGeneration(d time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.botGenerations.WithLabelValues(result).Inc()
	m.botTime.Observe(d.Seconds())
}

// SetDraining records whether the node is draining.
func (m *Metrics) SetDraining(on bool) {
	if m == nil {
		return
	}
	if on {
		m.draining.Set(1)
	} else {
		m.draining.Set(0)
	}
}
