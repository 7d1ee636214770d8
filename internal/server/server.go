// Package server is the messenger's server: the WebSocket endpoint, the
// server side of the handshake, the per-connection reader and writer, and
// the hub that routes room traffic through a broker.
package server

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/presence"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Config tunes the server. Every zero value means the documented default.
type Config struct {
	// HandshakeTimeout bounds the whole handshake. Zero means 10 seconds.
	HandshakeTimeout time.Duration
	// SessionTTL is how long a session stays resumable after its last
	// activity. Zero means 30 minutes.
	SessionTTL time.Duration
	// SessionMaxLifetime bounds a session's life however active it is;
	// after it the client must run a full handshake. Zero means 24 hours.
	SessionMaxLifetime time.Duration
	// TimestampWindow is the accepted difference between a message's
	// timestamp and the server's clock, either way. Zero means 5 minutes.
	// Message ids are remembered for twice the window plus a minute.
	TimestampWindow time.Duration
	// SendQueue is the number of messages pushed to one connection (room
	// messages, presence, key changes) that may wait for its writer before
	// it counts as a slow consumer and is disconnected. Answers to its own
	// requests are counted apart, up to the same number, and make the
	// connection's reader wait instead. Zero means 256.
	SendQueue int
	// PingInterval is how often the server pings an idle connection; a
	// peer silent for twice as long is dropped. Zero means 30 seconds.
	PingInterval time.Duration
	// WriteTimeout bounds one write to a connection. Zero means 10 seconds.
	WriteTimeout time.Duration
	// PublicOrigins are the origins (scheme://host[:port]) at which people
	// reach this server's pages, e.g. "https://chat.example.org". A
	// browser's WebSocket is accepted from these and AllowedOrigins only;
	// the request's own Host header is never trusted for it (a DNS
	// rebinding page sets Host and Origin alike). Empty means none.
	PublicOrigins []string
	// AllowedOrigins lists further Origin values a browser may connect
	// from (other sites that embed a client). Empty means none; "*"
	// allows any.
	AllowedOrigins []string
	// Suites lists the record suites the server accepts. Empty means
	// protocol.SupportedSuites.
	Suites []protocol.Suite
	// AllowAnonymous lets connections that have not logged in join rooms
	// and send, under a server-assigned "anon-…" name. False requires
	// register, login or auth first.
	AllowAnonymous bool
	// LoginFailuresPerUser is how many password logins an account may have
	// failed or under way within LoginWindow before further attempts are
	// refused; each attempt is counted before its password is checked.
	// Zero means 10.
	LoginFailuresPerUser int
	// LoginFailuresPerAddr is the same limit per client address (an IPv6
	// client: its /64), for password logins and, counted apart, for
	// signature auths. Zero means 50.
	LoginFailuresPerAddr int
	// LoginWindow is the throttling window. Zero means 15 minutes.
	LoginWindow time.Duration
	// RegisterPerAddr is how many register requests one client address
	// (an IPv6 client: its /64) may make per hour, successful or not,
	// before further ones are refused. Zero means 10; a negative value
	// refuses every registration.
	RegisterPerAddr int
	// TrustedProxies lists the reverse proxies whose X-Forwarded-For header
	// names the real client address (for per-address login throttling).
	// Empty means none: the connection's peer address counts.
	TrustedProxies []netip.Prefix
	// Limits bound what one client, address, user or room may take.
	Limits Limits
	// HTTPReadTimeout bounds reading one HTTP request, headers and body
	// (the WebSocket upgrade too; the WebSocket itself has its own
	// deadlines). Zero means 15 seconds.
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout is how long an idle keep-alive HTTP connection is
	// kept open. Zero means 2 minutes.
	HTTPIdleTimeout time.Duration
	// CredentialCheck is how often a logged-in connection compares the
	// credential generation it logged in at with the database's, on its
	// next request or pong: the longest it outlives a password or key
	// change whose revocation its node missed (docs/protocol.md §10.3).
	// Zero means a quarter of SessionTTL.
	CredentialCheck time.Duration
	// GapCheck is how often each node compares the heads of the room
	// streams it receives with what its broker delivered, to fill a loss
	// that no later message revealed (docs/protocol.md §8.7). A broker
	// reconnect triggers the same check within a second. Zero means 30
	// seconds.
	GapCheck time.Duration
	// PresenceInterval is how long a node collects a room's joins and
	// leaves before it publishes them as one batch. Zero means 200ms.
	PresenceInterval time.Duration
	// PresenceThreshold is the largest room, and the largest batch, whose
	// joins and leaves are sent one by one; above it members receive the
	// room's member count instead. Zero means 100.
	PresenceThreshold int
	// LinkTTL is how long a device link code works (docs/protocol.md
	// §10.5). Zero means 2 minutes.
	LinkTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 30 * time.Minute
	}
	if c.SessionMaxLifetime == 0 {
		c.SessionMaxLifetime = 24 * time.Hour
	}
	if c.TimestampWindow == 0 {
		c.TimestampWindow = 5 * time.Minute
	}
	if c.SendQueue == 0 {
		c.SendQueue = 256
	}
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if len(c.Suites) == 0 {
		c.Suites = protocol.SupportedSuites
	}
	if c.LoginFailuresPerUser == 0 {
		c.LoginFailuresPerUser = 10
	}
	if c.LoginFailuresPerAddr == 0 {
		c.LoginFailuresPerAddr = 50
	}
	if c.LoginWindow == 0 {
		c.LoginWindow = 15 * time.Minute
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = 15 * time.Second
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = 2 * time.Minute
	}
	if c.LinkTTL == 0 {
		c.LinkTTL = 2 * time.Minute
	}
	c.Limits.setDefaults()
	if c.RegisterPerAddr == 0 {
		c.RegisterPerAddr = 10
	}
	if c.PresenceInterval == 0 {
		c.PresenceInterval = defaultPresenceInterval
	}
	if c.PresenceThreshold == 0 {
		c.PresenceThreshold = defaultPresenceThreshold
	}
	if c.CredentialCheck == 0 {
		c.CredentialCheck = c.SessionTTL / 4
	}
}

// Deps are the server's collaborators.
type Deps struct {
	// Log receives connection and handshake events. Never keys or content.
	Log zerolog.Logger
	// Identity is the server's long-term RSA key, which must follow the
	// protocol's RSA key rule (protocol.CheckRSAPublicKey: 2048, 3072 or
	// 4096 bits, exponent 65537).
	Identity *rsa.PrivateKey
	// SessionKey (32 bytes) seals session secrets in the session store.
	SessionKey []byte
	// Sessions keeps sealed session secrets.
	Sessions ephemeral.SessionStore
	// Store keeps accounts, their keys and rooms.
	Store store.Store
	// Hasher hashes and checks passwords.
	Hasher *password.Hasher
	// Limiter counts login, auth and register attempts.
	Limiter ephemeral.Limiter
	// Rates keeps the token buckets of the rate limits (Config.Limits).
	// Nil means one in this process's memory, for a single node.
	Rates ephemeral.RateLimiter
	// NewBroker builds the broker the hub publishes through, given the
	// hub's delivery handler. Nil means an in-memory broker (one node).
	NewBroker func(broker.Handler) (broker.Broker, error)
	// OnGapFilled, if not nil, is called with the number of room messages
	// each gap fill read from the store because the broker lost them
	// (gapfill.go): the hook for a "broker gaps filled" metric. It is
	// called on the broker's delivery goroutine and must not block.
	OnGapFilled func(messages int)
	// Presence records room members for every node (docs/protocol.md
	// §8.3). Nil means one in this process's memory, for a single node.
	Presence presence.Registry
	// Metrics receives the server's measurements. Nil means none.
	Metrics *metrics.Metrics
	// Checks are the backends besides the database that /readyz asks
	// about (health.go).
	Checks []Check
}

// passwordHasher is what the server uses of *password.Hasher, so that tests
// can count the password work a request does.
type passwordHasher interface {
	Hash(ctx context.Context, pw string) (string, error)
	Verify(ctx context.Context, encoded, pw string) (needsRehash bool, err error)
	DummyVerify(ctx context.Context, pw string) error
}

var _ passwordHasher = (*password.Hasher)(nil)

// Server serves the messenger's WebSocket endpoint.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	hs       *handshakeConfig
	sessions *sessions
	rates    ephemeral.RateLimiter
	store    store.Store
	hasher   passwordHasher
	limiter  ephemeral.Limiter
	hub      *Hub
	roomMu   roomLocks // history.go: one conversation's append and delivery at a time
	appender appender  // appender.go: group commit of room sends
	logins   *logins
	presence *roomPresence
	upgrader websocket.Upgrader
	fp       protocol.Fingerprint

	conns      counter // established connections
	handshakes counter // handshakes in progress

	mu       sync.Mutex
	clients  map[*peer]struct{}
	closing  bool
	handlers sync.WaitGroup
	closers  []func() error

	metrics *metrics.Metrics // nil-safe
	checks  []Check
	ready   readiness
}

// New returns a server. Call Run to start its hub.
func New(cfg Config, d Deps) (*Server, error) {
	cfg.setDefaults()
	if d.Identity == nil {
		return nil, errors.New("server: identity key missing")
	}
	if err := protocol.CheckRSAPublicKey(&d.Identity.PublicKey); err != nil {
		return nil, fmt.Errorf("server: identity key: %w", err)
	}
	if d.Sessions == nil || d.Limiter == nil || d.Store == nil || d.Hasher == nil {
		return nil, errors.New("server: session store, limiter, store and hasher are required")
	}
	der, err := x509.MarshalPKIXPublicKey(&d.Identity.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("server: identity key: %w", err)
	}
	sess, err := newSessions(d.Sessions, d.SessionKey, cfg.SessionTTL, cfg.SessionMaxLifetime)
	if err != nil {
		return nil, err
	}
	newBroker := d.NewBroker
	if newBroker == nil {
		newBroker = func(h broker.Handler) (broker.Broker, error) { return broker.NewMemoryBroker(h), nil }
	}
	logins := newLogins(d.Log)
	hub, err := NewHub(d.Log.With().Str("component", "hub").Logger(), logins.wrap(newBroker))
	if err != nil {
		return nil, err
	}
	hub.MaxRooms, hub.MaxMembers = cfg.Limits.RoomsPerConnection, cfg.Limits.MembersPerRoom
	hub.GapCheck = cfg.GapCheck
	hub.gaps = newGapFiller(d.Store, d.Log.With().Str("component", "gapfill").Logger(), d.OnGapFilled)
	sctx, cancel := context.WithTimeout(context.Background(), hubBrokerTimeout)
	err = logins.subscribe(sctx)
	cancel()
	if err != nil {
		d.Log.Warn().Err(err).Msg("revocations from other nodes arrive only through the periodic check until the broker subscribes")
	}
	s := &Server{
		cfg:      cfg,
		log:      d.Log,
		hs:       &handshakeConfig{identity: d.Identity, identityDER: der, suites: cfg.Suites, sessions: sess},
		sessions: sess,
		rates:    d.Rates,
		store:    d.Store,
		hasher:   d.Hasher,
		limiter:  d.Limiter,
		hub:      hub,
		logins:   logins,
		fp:       protocol.FingerprintOf(der),
		clients:  make(map[*peer]struct{}),
		metrics:  d.Metrics,
		checks:   d.Checks,
	}
	reg := d.Presence
	if reg == nil {
		reg = presence.NewMemory(0)
	}
	s.presence = newRoomPresence(reg, hub, d.Log.With().Str("component", "presence").Logger(), cfg.PresenceInterval, cfg.PresenceThreshold)
	if s.rates == nil {
		mem := ephemeral.NewMemoryRateLimiter(ephemeral.MemoryConfig{})
		s.rates = mem
		s.closers = append(s.closers, mem.Close)
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// Reads go through a small buffer of the connection's own
		// (corkWriter.Hijack hands it over) rather than the HTTP server's
		// 4 KiB one, which ServeWS thereby lets go with the rest of the
		// HTTP server's per-connection state; writes take a buffer from a
		// pool only while a message is being written, so an idle
		// connection holds none.
		WriteBufferPool: &writeBuffers,
		CheckOrigin:     s.checkOrigin,
	}
	s.appender.srv = s
	return s, nil
}

// readBufferSize is each connection's WebSocket read buffer. Requests are
// small (a join, a 256-byte send: one read each); the larger part of a
// larger frame is read straight into the message, past the buffer, so a
// small buffer costs only a client that pipelines many requests a few
// more reads, and every idle connection 3.5 KiB less than the HTTP
// server's 4 KiB. It must hold a frame header and a control frame
// (14 + 125 bytes).
const readBufferSize = 512

// writeBuffers is the WebSocket write buffers of every server's
// connections.
var writeBuffers sync.Pool

// Fingerprint returns the server identity key's fingerprint, the value
// clients pin.
func (s *Server) Fingerprint() protocol.Fingerprint { return s.fp }

// Run runs the hub until ctx ends.
func (s *Server) Run(ctx context.Context) {
	go s.presence.run(ctx)
	s.hub.Run(ctx)
}

func (s *Server) nonceTTL() time.Duration { return 2*s.cfg.TimestampWindow + time.Minute }

// checkOrigin accepts requests without an Origin (non-browser clients) and
// those from the public and allowed origins. It never compares with the
// request's Host: a page on a DNS-rebound name has Origin and Host alike.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if slices.Contains(s.cfg.AllowedOrigins, "*") {
		return true
	}
	for _, o := range slices.Concat(s.cfg.PublicOrigins, s.cfg.AllowedOrigins) {
		if sameOrigin(o, origin) {
			return true
		}
	}
	return false
}

// sameOrigin compares two serialized origins: scheme and host
// case-insensitively, ports exactly, with the scheme's default port
// implied.
func sameOrigin(a, b string) bool {
	ua, err := url.Parse(a)
	if err != nil {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		switch strings.ToLower(u.Scheme) {
		case "https":
			return "443"
		case "http":
			return "80"
		}
		return ""
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}

// wsFrames adapts a WebSocket to protocol.FrameIO.
type wsFrames struct{ ws *websocket.Conn }

func (f wsFrames) ReadFrame() ([]byte, error) { return readFrame(f.ws) }
func (f wsFrames) WriteFrame(b []byte) error  { return f.ws.WriteMessage(websocket.BinaryMessage, b) }

// ServeWS upgrades the request, runs the handshake, and hands the
// connection to a goroutine of its own that serves it until it ends; the
// HTTP handler returns then. The handshake's deep stack (RSA signing) and
// the HTTP server's per-connection state (its 4 KiB buffered reader and
// writer, the request) are thereby released instead of being kept for the
// connection's lifetime: a hijacked connection's handler may return
// (net/http no longer touches the connection) and the reader starts with a
// small stack.
func (s *Server) ServeWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	handedOver := false // then serve calls s.handlers.Done
	defer func() {
		if !handedOver {
			s.handlers.Done()
		}
	}()

	cw := &corkWriter{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(cw, r, nil)
	if err != nil {
		s.log.Info().Err(err).Str("remote", r.RemoteAddr).Msg("websocket upgrade refused")
		return
	}
	remoteIP := clientIP(r, s.cfg.TrustedProxies)
	logc := s.log.With().Str("remote", r.RemoteAddr)
	if remoteIP != hostOf(r.RemoteAddr) {
		logc = logc.Str("client", remoteIP) // as named by a trusted proxy
	}
	log := logc.Logger()
	addr := remoteAddrKey(remoteIP)

	start := time.Now()
	lim := s.cfg.Limits
	if err := s.conns.acquire(addr, lim.MaxConnections, lim.MaxConnectionsPerAddr, "connections"); err != nil {
		s.abortHandshake(ws, log, err, 0)
		return
	}
	defer func() {
		if !handedOver {
			s.conns.release(addr)
		}
	}()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.HandshakeTimeout)
	release, err := s.admitHandshake(ctx, addr)
	if err != nil {
		cancel()
		s.abortHandshake(ws, log, err, 0)
		return
	}
	_ = ws.SetReadDeadline(start.Add(s.cfg.HandshakeTimeout))
	_ = ws.SetWriteDeadline(start.Add(s.cfg.HandshakeTimeout))
	hs := &serverHandshake{ctx: ctx, io: &protocol.HandshakeIO{Conn: wsFrames{ws}, Transcript: protocol.NewTranscript()}, cfg: s.hs}
	err = hs.handshake()
	release()
	cancel()
	if err != nil {
		s.abortHandshake(ws, log, err, time.Since(start))
		return
	}
	s.metrics.HandshakeDone(hs.resumed, time.Since(start))
	_ = ws.SetWriteDeadline(time.Time{})

	c := &peer{
		srv:       s,
		ws:        ws,
		id:        newConnID(),
		sessionID: hs.sessionID,
		resumed:   hs.resumed,
		exporter:  hs.exporter,
		session:   hs.state,
		remoteIP:  remoteIP,
		addr:      addr,
		requests:  newRequestLimiter(lim.RequestRate),
		seal:      hs.seal,
		open:      hs.open,
		queue:     newSendQueue(s.cfg.SendQueue),
		cork:      cw.conn,
		closeCh:   make(chan closeRequest, 1),
		writerEnd: make(chan struct{}),
		name:      defaultName(hs.sessionID),
		lastTouch: time.Now(),
	}
	c.log = log.With().Str("conn", c.id).Str("session", sessionKey(hs.sessionID)[:8]).Logger()
	c.closeLog = c.log
	// Before anyone else can see c (track): what starts the writer, and
	// the pings.
	c.queue.run = c.writeLoop
	c.pinger = time.AfterFunc(s.cfg.PingInterval, c.pingDue)
	c.log.Info().Bool("resumed", hs.resumed).Stringer("suite", hs.suite).
		Dur("handshake", time.Since(start)).Msg("handshake complete")

	// The connection's requests run under a context of their own: the
	// request's ends when this handler returns (before, a hijacked
	// connection's request context was never cancelled while it was
	// served either, and the server reads no value from it), and holding
	// it would keep the HTTP server's per-request contexts alive. The
	// goroutine keeps c only, not the handshake.
	handedOver = true
	go func() {
		defer s.handlers.Done()
		defer s.conns.release(addr)
		s.serve(context.Background(), c)
	}()
}

// serve runs an established connection until it ends: it restores a
// resumed session's user, sends "ready", reads requests, and on the way out
// leaves the connection's rooms and waits for its writer.
func (s *Server) serve(ctx context.Context, c *peer) {
	defer func() { c.log.Info().Msg("connection closed") }()
	tracked := s.track(c)
	defer s.untrack(c)
	defer func() {
		c.fail(0, "")
		<-c.writerEnd
	}()
	if !tracked {
		c.fail(protocol.CodeGoingAway, "server shutting down")
		return
	}
	if !s.welcome(ctx, c) {
		return
	}
	c.readLoop(ctx)

	bg := context.WithoutCancel(ctx)
	for _, room := range s.hub.LeaveAll(bg, c) {
		c.presence(bg, room, "leave")
	}
}

// welcome restores a resumed session's user and sends "ready"; false
// means it closed the connection instead. Apart from serve so that serve's
// stack frame, which the reader keeps while it waits, stays small (the
// user record and the ready message are large).
func (s *Server) welcome(ctx context.Context, c *peer) bool {
	if st := c.session; st.user != uuid.Nil {
		// A resumed session keeps its user, unless the user's credentials
		// changed since it logged in. Entered in the login table first, so
		// that a change from now on closes it too.
		s.logins.login(c, st.user, st.generation, st.device)
		u, err := s.store.UserByID(ctx, st.user)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.log.Warn().Msg("resumed session's account is gone")
			c.fail(protocol.CodeSessionUnknown, "the session's account is gone")
			return false
		case err != nil:
			c.log.Error().Err(err).Msg("resumed session's user")
			c.fail(protocol.CodeUnavailable, "database unavailable; retry")
			return false
		case u.Generation != st.generation:
			if err := s.sessions.end(ctx, c.sessionID); err != nil {
				c.log.Warn().Err(err).Msg("revoked session's record not deleted")
			}
			c.fail(protocol.CodeSessionRevoked, revokedReason)
			return false
		}
		if !s.resumedDeviceCurrent(ctx, c) {
			return false
		}
		c.device = st.device
		u.PasswordHash = ""
		c.user = &u
		c.lastCheck = time.Now()
		c.setName(u.Name)
		c.log = c.log.With().Str("user", u.Name).Logger()
	}
	c.reply(&protocol.Message{Type: protocol.MsgReady, Session: &protocol.SessionInfo{
		ID:         sessionKey(c.sessionID),
		TTL:        int(s.cfg.SessionTTL / time.Second),
		Resumed:    c.resumed,
		Name:       c.displayName(),
		User:       c.userName(),
		ServerTime: time.Now().UnixMilli(),
		Window:     int(s.cfg.TimestampWindow / time.Second),
	}})
	return true
}

// abortHandshake sends an Alert for err and closes.
func (s *Server) abortHandshake(ws *websocket.Conn, log zerolog.Logger, err error, took time.Duration) {
	defer ws.Close()
	if errors.Is(err, errPeerClosed) {
		log.Info().Err(err).Dur("took", took).Msg("handshake abandoned by client")
		s.metrics.HandshakeAbandoned(took)
		return
	}
	code := protocol.CodeOf(err)
	s.metrics.HandshakeFailed(code, took)
	ev := log.Warn().Stringer("code", code).Err(err).Dur("took", took)
	var re *requestError
	if errors.As(err, &re) {
		ev = ev.AnErr("cause", re.cause) // e.g. the rate limiter's backend
	}
	ev.Msg("handshake failed")
	var peer *protocol.PeerError
	if errors.As(err, &peer) {
		return // the client sent the alert; nothing to answer
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	_ = ws.SetWriteDeadline(deadline)
	_ = ws.WriteMessage(websocket.BinaryMessage, (&protocol.Alert{Code: code, Reason: publicReason(code, err)}).Marshal())
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code.CloseCode(), code.String()), deadline)
}

func (s *Server) track(c *peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c] = struct{}{}
	s.metrics.ConnOpened()
	return !s.closing
}

func (s *Server) untrack(c *peer) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	s.metrics.ConnEnded()
	s.logins.forget(c)
}

// Shutdown refuses new connections, closes every open one with
// protocol.CodeGoingAway (their sessions stay resumable), waits for them
// to end or ctx to expire, and closes the broker.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for c := range s.clients {
		c.fail(protocol.CodeGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
	if cerr := s.hub.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("server: close broker: %w", cerr)
	}
	for _, c := range s.closers {
		_ = c()
	}
	return err
}
