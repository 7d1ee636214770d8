package main

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/envflag"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/keyfile"
	"github.com/secure-messenger/messenger/internal/keyring"
	"github.com/secure-messenger/messenger/internal/metrics"
	"github.com/secure-messenger/messenger/internal/password"
	"github.com/secure-messenger/messenger/internal/presence"
	"github.com/secure-messenger/messenger/internal/retention"
	"github.com/secure-messenger/messenger/internal/server"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/protocol"
	"github.com/secure-messenger/messenger/web"
)

// options are the server's settings, from flags and their environment
// twins (a flag given on the command line wins).
type options struct {
	addr             string
	dataDir          string
	redisURL         string
	redisPrefix      string
	logLevel         string
	logFormat        string
	origins          string
	trustedProxies   string
	sessionTTL       time.Duration
	sessionMax       time.Duration
	window           time.Duration
	handshakeTimeout time.Duration
	identityBits     int
	sendQueue        int
	dbURL            string
	anonymous        bool
	argonMemory      int
	argonTime        int
	hashConcurrency  int
	publicOrigins    string
	httpReadTimeout  time.Duration
	httpIdleTimeout  time.Duration
	tls              tlsOptions
	limits           server.Limits
	registerPerAddr  int
	loginPerUser     int
	loginPerAddr     int
	loginWindow      time.Duration

	redisMode         string
	presenceTTL       time.Duration
	presenceInterval  time.Duration
	presenceThreshold int
	storage           storageOptions
	bot               *botOptions // bot.go
	metricsAddr       string
	pprof             bool
	drainTimeout      time.Duration
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("messenger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ev := envflag.New(getenv)
	env, envDur, envInt := ev.String, ev.Duration, ev.Int
	fs.StringVar(&o.addr, "addr", env("MESSENGER_ADDR", "127.0.0.1:8080"), "listen address (MESSENGER_ADDR)")
	fs.StringVar(&o.dataDir, "data", env("MESSENGER_DATA", "./data"), "data directory: identity key, storage key, SQLite file (MESSENGER_DATA)")
	fs.StringVar(&o.redisURL, "redis", env("MESSENGER_REDIS", ""), "Redis URL, e.g. redis://127.0.0.1:6379/0; empty keeps sessions and nonces in memory (MESSENGER_REDIS)")
	fs.StringVar(&o.redisMode, "redis-mode", env("MESSENGER_REDIS_MODE", redisStandalone), "how -redis is deployed: standalone, sentinel (URL names sentinels and ?master_name=) or cluster (URL names nodes; sharded pub/sub) (MESSENGER_REDIS_MODE)")
	fs.DurationVar(&o.presenceTTL, "presence-ttl", envDur("MESSENGER_PRESENCE_TTL", presence.DefaultTTL), "how long a node's room members stay listed after it stops refreshing them (a crash) (MESSENGER_PRESENCE_TTL)")
	fs.DurationVar(&o.presenceInterval, "presence-interval", envDur("MESSENGER_PRESENCE_INTERVAL", 200*time.Millisecond), "how long joins and leaves are collected into one presence batch (MESSENGER_PRESENCE_INTERVAL)")
	fs.IntVar(&o.presenceThreshold, "presence-threshold", envInt("MESSENGER_PRESENCE_THRESHOLD", 100), "rooms and batches larger than this get a member count instead of join and leave events (MESSENGER_PRESENCE_THRESHOLD)")
	fs.StringVar(&o.redisPrefix, "redis-prefix", env("MESSENGER_REDIS_PREFIX", "msgr:"), "prefix of every Redis key and channel (MESSENGER_REDIS_PREFIX)")
	fs.StringVar(&o.logLevel, "log-level", env("MESSENGER_LOG_LEVEL", "info"), "debug, info, warn or error (MESSENGER_LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", env("MESSENGER_LOG_FORMAT", "console"), "console or json (MESSENGER_LOG_FORMAT)")
	fs.StringVar(&o.origins, "origins", env("MESSENGER_ORIGINS", ""), "comma-separated browser origins allowed besides the same origin; * for any (MESSENGER_ORIGINS)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", env("MESSENGER_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client (MESSENGER_TRUSTED_PROXIES)")
	fs.DurationVar(&o.sessionTTL, "session-ttl", envDur("MESSENGER_SESSION_TTL", 30*time.Minute), "how long an idle session stays resumable (MESSENGER_SESSION_TTL)")
	fs.DurationVar(&o.sessionMax, "session-max-lifetime", envDur("MESSENGER_SESSION_MAX_LIFETIME", 24*time.Hour), "longest a session lives however active; then a full handshake (MESSENGER_SESSION_MAX_LIFETIME)")
	fs.DurationVar(&o.window, "ts-window", envDur("MESSENGER_TS_WINDOW", 5*time.Minute), "accepted clock skew of message timestamps (MESSENGER_TS_WINDOW)")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", envDur("MESSENGER_HANDSHAKE_TIMEOUT", 10*time.Second), "time allowed for a handshake (MESSENGER_HANDSHAKE_TIMEOUT)")
	fs.IntVar(&o.identityBits, "identity-bits", envInt("MESSENGER_IDENTITY_BITS", keyfile.DefaultRSABits), "size of a newly created identity key: 2048, 3072 or 4096 (MESSENGER_IDENTITY_BITS)")
	fs.IntVar(&o.sendQueue, "send-queue", envInt("MESSENGER_SEND_QUEUE", 256), "messages pushed to one connection that may wait before it is dropped as too slow; answers to its own requests count apart (MESSENGER_SEND_QUEUE)")
	fs.StringVar(&o.dbURL, "db", env("MESSENGER_DB", ""), "database: empty for SQLite in the data directory, postgres://… for PostgreSQL, sqlite:///path for another SQLite file (MESSENGER_DB)")
	fs.BoolVar(&o.anonymous, "anonymous", ev.Bool("MESSENGER_ANONYMOUS", false), "let connections that have not logged in join rooms and talk (MESSENGER_ANONYMOUS=true)")
	fs.IntVar(&o.argonMemory, "argon2-memory", envInt("MESSENGER_ARGON2_MEMORY", 19456), "Argon2id memory per password hash in KiB, at least 19456 (MESSENGER_ARGON2_MEMORY)")
	fs.IntVar(&o.argonTime, "argon2-time", envInt("MESSENGER_ARGON2_TIME", 2), "Argon2id passes, at least 2 (MESSENGER_ARGON2_TIME)")
	fs.IntVar(&o.hashConcurrency, "hash-concurrency", envInt("MESSENGER_HASH_CONCURRENCY", 0), "password hashes computed at once; 0 means one per CPU (MESSENGER_HASH_CONCURRENCY)")
	fs.StringVar(&o.publicOrigins, "public-origin", env("MESSENGER_PUBLIC_ORIGIN", ""), "comma-separated origins at which people open this server's pages, e.g. https://chat.example.org; empty means http://ADDR (and http://localhost:PORT on a loopback or wildcard address) (MESSENGER_PUBLIC_ORIGIN)")
	fs.DurationVar(&o.httpReadTimeout, "http-read-timeout", envDur("MESSENGER_HTTP_READ_TIMEOUT", 15*time.Second), "time allowed to read one HTTP request (MESSENGER_HTTP_READ_TIMEOUT)")
	fs.DurationVar(&o.httpIdleTimeout, "http-idle-timeout", envDur("MESSENGER_HTTP_IDLE_TIMEOUT", 2*time.Minute), "how long an idle keep-alive HTTP connection stays open (MESSENGER_HTTP_IDLE_TIMEOUT)")
	fs.StringVar(&o.tls.certFile, "tls-cert", env("MESSENGER_TLS_CERT", ""), "PEM certificate (chain) file: serve HTTPS and WSS itself; with -tls-key (MESSENGER_TLS_CERT)")
	fs.StringVar(&o.tls.keyFile, "tls-key", env("MESSENGER_TLS_KEY", ""), "PEM private key file of -tls-cert (MESSENGER_TLS_KEY)")
	fs.StringVar(&o.tls.acmeDomains, "acme-domain", env("MESSENGER_ACME_DOMAIN", ""), "comma-separated public host names: get and renew their certificates automatically over ACME (TLS-ALPN-01: listen where the public reaches port 443), cached in DATA/acme (MESSENGER_ACME_DOMAIN)")
	fs.StringVar(&o.tls.acmeEmail, "acme-email", env("MESSENGER_ACME_EMAIL", ""), "contact address given to the ACME certificate authority; optional (MESSENGER_ACME_EMAIL)")
	d := server.DefaultLimits()
	l := &o.limits
	fs.IntVar(&l.MaxConnections, "max-conns", envInt("MESSENGER_MAX_CONNS", d.MaxConnections), "connections this node holds; -1 for no limit (MESSENGER_MAX_CONNS)")
	fs.IntVar(&l.MaxConnectionsPerAddr, "max-conns-per-addr", envInt("MESSENGER_MAX_CONNS_PER_ADDR", d.MaxConnectionsPerAddr), "connections per client address (IPv6: per /64) on this node; -1 for no limit (MESSENGER_MAX_CONNS_PER_ADDR)")
	fs.IntVar(&l.MaxHandshakes, "max-handshakes", envInt("MESSENGER_MAX_HANDSHAKES", d.MaxHandshakes), "handshakes in progress at once on this node; -1 for no limit (MESSENGER_MAX_HANDSHAKES)")
	fs.IntVar(&l.MaxHandshakesPerAddr, "max-handshakes-per-addr", envInt("MESSENGER_MAX_HANDSHAKES_PER_ADDR", d.MaxHandshakesPerAddr), "handshakes in progress at once per client address; -1 for no limit (MESSENGER_MAX_HANDSHAKES_PER_ADDR)")
	fs.IntVar(&l.RoomsPerConnection, "rooms-per-conn", envInt("MESSENGER_ROOMS_PER_CONN", d.RoomsPerConnection), "rooms one connection may be in; -1 for no limit (MESSENGER_ROOMS_PER_CONN)")
	fs.IntVar(&l.MembersPerRoom, "room-members", envInt("MESSENGER_ROOM_MEMBERS", d.MembersPerRoom), "connections in one room on this node; -1 for no limit (MESSENGER_ROOM_MEMBERS)")
	rates := []struct {
		flag, envName, usage string
		dst                  *ephemeral.Rate
		def                  ephemeral.Rate
	}{
		{"handshake-rate", "MESSENGER_HANDSHAKE_RATE", "handshakes (full or resumed) one client address may start", &l.HandshakeRate, d.HandshakeRate},
		{"request-rate", "MESSENGER_REQUEST_RATE", "requests one connection may send", &l.RequestRate, d.RequestRate},
		{"user-request-rate", "MESSENGER_USER_REQUEST_RATE", "requests one user may send over all connections", &l.UserRequestRate, d.UserRequestRate},
		{"send-rate", "MESSENGER_SEND_RATE", "messages one user (anonymous: one address) may send", &l.SendRate, d.SendRate},
		{"room-send-rate", "MESSENGER_ROOM_SEND_RATE", "messages all members together may send to one room", &l.RoomSendRate, d.RoomSendRate},
		{"stream-rate", "MESSENGER_STREAM_RATE", "stream and conv_stream events (streamed answers) one user (anonymous: one address) may send", &l.StreamRate, d.StreamRate},
	}
	rateText := make([]string, len(rates))
	for i, r := range rates {
		fs.StringVar(&rateText[i], r.flag, env(r.envName, r.def.String()), r.usage+": N/s, N/min or N/h with an optional :BURST, or off ("+r.envName+")")
	}
	fs.IntVar(&o.loginPerUser, "login-failures-per-user", envInt("MESSENGER_LOGIN_FAILURES_PER_USER", 10), "password logins per user name that may fail (or be under way) within -login-window (MESSENGER_LOGIN_FAILURES_PER_USER)")
	fs.IntVar(&o.loginPerAddr, "login-failures-per-addr", envInt("MESSENGER_LOGIN_FAILURES_PER_ADDR", 50), "password logins, and apart signature logins, per client address (IPv6: per /64) that may fail within -login-window (MESSENGER_LOGIN_FAILURES_PER_ADDR)")
	fs.DurationVar(&o.loginWindow, "login-window", envDur("MESSENGER_LOGIN_WINDOW", 15*time.Minute), "the window of the failed-login limits (MESSENGER_LOGIN_WINDOW)")
	fs.IntVar(&o.registerPerAddr, "register-per-addr", envInt("MESSENGER_REGISTER_PER_ADDR", 10), "register requests allowed per client address (IPv6: per /64) per hour (MESSENGER_REGISTER_PER_ADDR)")
	o.storage.addFlags(fs, ev)
	o.bot = addBotFlags(fs, ev, getenv) // bot.go
	fs.StringVar(&o.metricsAddr, "metrics-addr", env("MESSENGER_METRICS_ADDR", ""), "listen address of /metrics, /healthz and /readyz for operators, e.g. 127.0.0.1:9090; empty: none (MESSENGER_METRICS_ADDR)")
	fs.BoolVar(&o.pprof, "pprof", ev.Bool("MESSENGER_PPROF", false), "also serve Go's profiler (net/http/pprof, /debug/pprof/) on -metrics-addr, for measuring the server under load; profiles show no message content but do show where time goes, so keep the listener private (MESSENGER_PPROF=true)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", envDur("MESSENGER_DRAIN_TIMEOUT", 20*time.Second), "on SIGTERM, how long the node waits for its connections to close after telling them to reconnect elsewhere (MESSENGER_DRAIN_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := o.storage.check(); err != nil {
		return nil, err
	}
	for i, r := range rates {
		v, err := ephemeral.ParseRate(rateText[i])
		if err != nil {
			return nil, fmt.Errorf("-%s: %w", r.flag, err)
		}
		*r.dst = v
	}
	for name, v := range map[string]int{"max-conns": l.MaxConnections, "max-conns-per-addr": l.MaxConnectionsPerAddr,
		"max-handshakes": l.MaxHandshakes, "max-handshakes-per-addr": l.MaxHandshakesPerAddr,
		"rooms-per-conn": l.RoomsPerConnection, "room-members": l.MembersPerRoom} {
		if v == 0 {
			return nil, fmt.Errorf("-%s 0: want a positive limit, or -1 for none", name)
		}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := ev.Err(); err != nil {
		return nil, err
	}
	if !protocol.ValidRSAKeySize(o.identityBits) {
		return nil, fmt.Errorf("-identity-bits %d: want one of %v, the sizes clients accept", o.identityBits, protocol.RSAKeySizes)
	}
	if o.argonMemory < 19456 || o.argonTime < 2 {
		return nil, fmt.Errorf("-argon2-memory %d / -argon2-time %d: OWASP's floor is 19456 KiB and 2 passes", o.argonMemory, o.argonTime)
	}
	if o.hashConcurrency < 0 {
		return nil, fmt.Errorf("-hash-concurrency %d: want 0 or more", o.hashConcurrency)
	}
	if o.loginPerUser < 1 || o.loginPerAddr < 1 || o.loginWindow <= 0 {
		return nil, fmt.Errorf("-login-failures-per-user %d, -login-failures-per-addr %d, -login-window %s: want positive values", o.loginPerUser, o.loginPerAddr, o.loginWindow)
	}
	if o.drainTimeout <= 0 {
		return nil, fmt.Errorf("-drain-timeout %s: want a positive duration", o.drainTimeout)
	}
	if err := o.tls.check(); err != nil {
		return nil, err
	}
	if o.registerPerAddr < 1 {
		return nil, fmt.Errorf("-register-per-addr %d: want 1 or more", o.registerPerAddr)
	}
	return o, nil
}

func newLogger(o *options, stderr io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(o.logLevel)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("-log-level: %w", err)
	}
	var w io.Writer = stderr
	switch o.logFormat {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("-log-format %q: want console or json", o.logFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// deriveKey derives a purpose-specific key from the storage key, so one
// file backs every symmetric key the server keeps.
func deriveKey(storage []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, storage, nil, "messenger v1 storage "+purpose, 32)
	if err != nil {
		panic("deriveKey: " + err.Error())
	}
	return k
}

// messageKeyring is the keyring that seals stored message bodies: one key,
// derived from the storage key. Its id is derived from the storage key
// too, so that the keys of two storage.key files get different ids (but
// for a 2^-32 chance) without a record of which is which; a storage key
// rotation can then hold both while the store rewraps.
func messageKeyring(storage []byte) (*store.StaticKeyring, error) {
	return keyring.Single(storage).StoreKeyring()
}

// run is the whole server: it returns when ctx ends (after a graceful
// shutdown) or on a start-up error. It prints "listening on ADDR" and the
// identity fingerprint to stdout once it accepts connections.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == rotateCommand {
		return runRotate(ctx, args[1:], getenv, stdout, stderr)
	}
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	identity, created, err := keyfile.LoadOrCreateRSA(filepath.Join(o.dataDir, "identity.pem"), o.identityBits)
	if err != nil {
		return err
	}
	if created {
		log.Info().Str("path", filepath.Join(o.dataDir, "identity.pem")).Int("bits", o.identityBits).Msg("created identity key")
	}
	storageKey, _, err := keyfile.LoadOrCreateSymmetric(filepath.Join(o.dataDir, "storage.key"))
	if err != nil {
		return err
	}

	deps := server.Deps{
		Log:        log,
		Identity:   identity,
		SessionKey: deriveKey(storageKey, "session records"),
		Metrics:    metrics.New(),
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}()
	deps.OnGapFilled = deps.Metrics.GapFilled
	if o.redisURL != "" {
		rc, raddr, err := newRedisClient(o.redisURL, o.redisMode)
		if err != nil {
			return fmt.Errorf("-redis: %w", err)
		}
		rc.AddHook(deps.Metrics.RedisHook())
		deps.Checks = append(deps.Checks, server.Check{Name: "redis", Ping: func(ctx context.Context) error { return rc.Ping(ctx).Err() }})
		closers = append(closers, rc.Close)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rc.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("redis at %s: %w", raddr, err)
		}
		rcfg := ephemeral.RedisConfig{Prefix: o.redisPrefix}
		deps.Sessions = ephemeral.NewRedisSessionStore(rc, rcfg)
		deps.Rates = ephemeral.NewRedisRateLimiter(rc, rcfg)
		deps.Limiter = ephemeral.NewRedisLimiter(rc, rcfg)
		brokerKey := deriveKey(storageKey, "broker payloads")
		deps.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return broker.NewRedisBroker(rc, broker.RedisConfig{Prefix: o.redisPrefix, Key: brokerKey}, h)
		}
		reg, err := presence.NewRedis(rc, presence.RedisConfig{Prefix: o.redisPrefix, Key: deriveKey(storageKey, "presence names"), TTL: o.presenceTTL})
		if err != nil {
			return err
		}
		deps.Presence = reg
		log.Info().Str("redis", raddr).Str("mode", o.redisMode).Msg("ephemeral state, presence and broker in Redis")
	} else {
		ss := ephemeral.NewMemorySessionStore(ephemeral.MemoryConfig{})
		rl := ephemeral.NewMemoryRateLimiter(ephemeral.MemoryConfig{})
		lim := ephemeral.NewMemoryLimiter(ephemeral.MemoryConfig{})
		closers = append(closers, ss.Close, rl.Close, lim.Close)
		deps.Sessions, deps.Rates, deps.Limiter = ss, rl, lim
		log.Info().Msg("ephemeral state in memory (no -redis)")
	}

	keysCtx, stopKeys := context.WithCancel(context.WithoutCancel(ctx))
	defer stopKeys()
	keys, err := openKeyring(keysCtx, keyringPath(o.storage.keyringFile, o.dataDir), storageKey, o.storage.keyringReload, log)
	if err != nil {
		return err
	}
	dbctx, cancelDB := context.WithTimeout(ctx, 30*time.Second)
	db, err := store.Open(dbctx, o.dbURL, o.dataDir, store.WithKeyring(keys), store.WithQueryTracer(deps.Metrics.DBTracer()))
	cancelDB()
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	closers = append(closers, db.Close)
	deps.Store = db
	pruneCtx, stopPruning := context.WithCancel(ctx)
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		retention.Run(pruneCtx, db, o.storage.rules, o.storage.retentionInterval, log)
	}()
	defer func() { stopPruning(); <-pruned }()
	hp := password.Params{Memory: uint32(o.argonMemory), Time: uint32(o.argonTime)}
	if err := hp.Check(); err != nil {
		return fmt.Errorf("argon2 parameters: %w", err)
	}
	deps.Hasher = password.NewHasher(hp, o.hashConcurrency)

	origins := splitList(o.origins)
	var proxies []netip.Prefix
	for _, s := range splitList(o.trustedProxies) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("-trusted-proxies %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		proxies = append(proxies, p)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	var tlsConfig *tls.Config
	if o.tls.enabled() {
		if tlsConfig, err = o.tls.config(o.dataDir); err != nil {
			return err
		}
	}
	publicOrigins := splitList(o.publicOrigins)
	if len(publicOrigins) == 0 {
		publicOrigins = defaultOrigins(ln.Addr())
		if o.tls.enabled() {
			publicOrigins = o.tls.origins(ln.Addr())
		}
	}
	srv, err := server.New(server.Config{
		HandshakeTimeout:     o.handshakeTimeout,
		SessionTTL:           o.sessionTTL,
		SessionMaxLifetime:   o.sessionMax,
		TimestampWindow:      o.window,
		SendQueue:            o.sendQueue,
		AllowedOrigins:       origins,
		AllowAnonymous:       o.anonymous,
		TrustedProxies:       proxies,
		PublicOrigins:        publicOrigins,
		HTTPReadTimeout:      o.httpReadTimeout,
		HTTPIdleTimeout:      o.httpIdleTimeout,
		Limits:               o.limits,
		RegisterPerAddr:      o.registerPerAddr,
		LoginFailuresPerUser: o.loginPerUser,
		LoginFailuresPerAddr: o.loginPerAddr,
		LoginWindow:          o.loginWindow,
		PresenceInterval:     o.presenceInterval,
		PresenceThreshold:    o.presenceThreshold,
	}, deps)
	if err != nil {
		return err
	}
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	go srv.Run(hubCtx)

	httpSrv := srv.HTTPServer(web.Files())
	serveErr := make(chan error, 2)
	ops, err := serveOps(o.metricsAddr, o.pprof, srv, serveErr)
	if err != nil {
		return err
	}
	if ops != nil {
		defer ops.srv.Close()
		fmt.Fprintf(stdout, "metrics on %s\n", ops.addr)
	}
	go func() { serveErr <- serve(httpSrv, ln, tlsConfig) }()
	if tlsConfig != nil {
		fmt.Fprintf(stdout, "listening on %s (TLS)\n", ln.Addr())
	} else {
		fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	}
	fmt.Fprintf(stdout, "identity fingerprint %s\n", srv.Fingerprint())
	log.Info().Str("addr", ln.Addr().String()).Str("fingerprint", srv.Fingerprint().String()).Msg("server started")
	botCtx, stopBot := context.WithCancel(ctx)
	botDone, err := startBot(botCtx, o.bot, o.dataDir, ln.Addr(), tlsConfig != nil, srv.Fingerprint(), log) // bot.go
	if err != nil {
		stopBot()
		return err
	}
	defer func() { stopBot(); <-botDone }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	drain(srv, httpSrv, o.drainTimeout, log)
	return nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// defaultOrigins is where people reach a server listening on addr when no
// -public-origin is given: http://ADDR, and http://localhost:PORT when addr
// is a loopback or wildcard address.
func defaultOrigins(addr net.Addr) []string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return []string{"http://" + addr.String()}
	}
	port := strconv.Itoa(int(ap.Port()))
	a := ap.Addr().Unmap()
	var out []string
	add := func(o string) {
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	if !a.IsUnspecified() {
		add("http://" + netip.AddrPortFrom(a, ap.Port()).String())
	}
	if a.IsLoopback() || a.IsUnspecified() {
		add("http://localhost:" + port)
		add("http://127.0.0.1:" + port)
		add("http://[::1]:" + port)
	}
	return out
}
