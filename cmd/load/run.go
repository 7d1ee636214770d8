package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// options are the command line.
type options struct {
	url          string
	pin          string
	target       string
	connectBy    string
	scenarios    []string
	conns        int
	concurrency  int
	roomSize     int
	hold         time.Duration
	resumeFor    time.Duration
	members      []int
	rates        []int
	duration     time.Duration
	size         int
	keys         int
	keyBits      int
	serverPID    int
	metricsURL   string
	handshakeFor time.Duration
	signBits     int
	jsonPath     string
	htmlPath     string
	drain        time.Duration
	// conv and bot (conv.go, botload.go)
	pairs        int
	convRate     float64
	convFor      time.Duration
	convReply    bool
	identityKeys int
	identityBits int
	botName      string
	botUsers     int
	botRooms     int
	botRate      float64
	botFor       time.Duration
	botWait      time.Duration
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var scen, members, rates string
	fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/ws", "the server's WebSocket endpoint")
	fs.StringVar(&o.connectBy, "connect-by", "handshake", "connect: how the timed connections open: handshake (a full handshake each), or resume (each resumes a session made and closed beforehand, untimed: a reconnect storm, as after a network cut or a node restart with sessions in Redis); messenger only")
	fs.StringVar(&o.target, "target", targetMessenger, "the server under test: messenger, or centrifugo (its JSON client protocol: -url ws://HOST:PORT/connection/websocket, anonymous; connect and fanout only)")
	fs.StringVar(&o.pin, "pin", "", "the server's identity fingerprint (64 hex digits); empty: ask GET /identity on the same host (fine for a local test, not a trustworthy pin)")
	fs.StringVar(&scen, "scenario", "connect,resume,fanout", "comma-separated scenarios, run in order: handshake (full-handshake storm beside this machine's RSA-PSS signing rate), connect (open -conns connections, each a full handshake and a join, and hold them), resume (resumption storm), fanout (room fan-out), conv (pairs of registered users in end-to-end conversations), bot (users mentioning the server's bot)")
	fs.IntVar(&o.conns, "conns", 1000, "connect: connections to open and hold")
	fs.IntVar(&o.concurrency, "concurrency", 64, "dials (handshakes) in flight at once")
	fs.IntVar(&o.roomSize, "room-size", 10, "connect: members per room the held connections join")
	fs.DurationVar(&o.hold, "hold", 3*time.Second, "connect: how long the connections stay open, idle, before the server's memory is read")
	fs.DurationVar(&o.handshakeFor, "handshake-for", 10*time.Second, "handshake: how long the full-handshake storm runs (the signing rate is measured for a quarter of it first)")
	fs.IntVar(&o.signBits, "sign-bits", 3072, "handshake: RSA size of the signing-rate reference; use the server's -identity-bits")
	fs.DurationVar(&o.resumeFor, "resume-for", 10*time.Second, "resume: how long the resumption storm runs")
	fs.StringVar(&members, "members", "100,1000", "fanout: comma-separated room sizes, one room per size (the publisher is one of the members)")
	fs.StringVar(&rates, "rates", "100,500,1000,2000", "fanout: comma-separated publish rates (messages/s) tried in order for each room size; a size stops after the first rate at which a delivery is missing or a member is dropped")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "fanout: how long each rate is held")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "fanout: how long to wait after the last publish for every delivery")
	fs.IntVar(&o.size, "size", 256, "fanout: message body size in bytes")
	fs.IntVar(&o.keys, "keys", 64, "session keys generated before any measurement and reused round robin (0: a fresh key per dial, inside the measurement)")
	fs.IntVar(&o.keyBits, "key-bits", 2048, "session key size: 2048, 3072 or 4096")
	fs.IntVar(&o.serverPID, "server-pid", 0, "the server's process id, to read its memory (VmRSS) from /proc; 0: not measured")
	fs.StringVar(&o.metricsURL, "metrics-url", "", "the server's /metrics URL (its -metrics-addr), to read its memory (process_resident_memory_bytes, Go heap in use, goroutines) instead of /proc; wins over -server-pid")
	fs.StringVar(&o.htmlPath, "html", "", "also write an HTML report with an SVG latency histogram and throughput-over-time plot per fan-out round to this file")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.IntVar(&o.pairs, "pairs", 100, "conv: pairs of registered users (A, B), each in its own end-to-end conversation")
	fs.Float64Var(&o.convRate, "conv-rate", 1, "conv: texts of -size bytes each A sends to its B per second")
	fs.DurationVar(&o.convFor, "conv-for", 10*time.Second, "conv: how long the As send (then up to -drain for the deliveries)")
	fs.BoolVar(&o.convReply, "conv-reply", true, "conv: B answers each text it receives (false: one direction, A to B)")
	fs.IntVar(&o.identityKeys, "identity-keys", 16, "conv, bot: identity (device) keys generated before any measurement and shared round robin by the registered accounts")
	fs.IntVar(&o.identityBits, "identity-bits", 3072, "conv, bot: identity key size (every record is signed with it): 2048, 3072 (the clients' default) or 4096")
	fs.StringVar(&o.botName, "bot", "bot", "bot: the user name of the server's bot (its -bot NAME)")
	fs.IntVar(&o.botUsers, "bot-users", 20, "bot: registered users mentioning the bot")
	fs.IntVar(&o.botRooms, "bot-rooms", 2, "bot: rooms the users are spread over, round robin")
	fs.Float64Var(&o.botRate, "bot-rate", 2, "bot: mentions per second, all users together")
	fs.DurationVar(&o.botFor, "bot-for", 10*time.Second, "bot: how long the users mention the bot")
	fs.DurationVar(&o.botWait, "bot-wait", time.Minute, "bot: how long to wait after the last mention for every answer or refusal")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.scenarios = strings.Split(scen, ",")
	for _, s := range o.scenarios {
		switch s {
		case "handshake", "connect", "resume", "fanout", "conv", "bot":
		default:
			return nil, fmt.Errorf("-scenario: unknown scenario %q (handshake, connect, resume, fanout, conv, bot)", s)
		}
	}
	scenarioSet := false
	fs.Visit(func(f *flag.Flag) { scenarioSet = scenarioSet || f.Name == "scenario" })
	if err := checkTarget(o, scenarioSet); err != nil {
		return nil, err
	}
	switch {
	case o.connectBy != "handshake" && o.connectBy != "resume":
		return nil, fmt.Errorf("-connect-by: %q is neither handshake nor resume", o.connectBy)
	case o.connectBy == "resume" && o.target != targetMessenger:
		return nil, errors.New("-connect-by resume: only the messenger has sessions to resume")
	}
	var err error
	if o.members, err = positiveInts("-members", members); err != nil {
		return nil, err
	}
	if o.rates, err = positiveInts("-rates", rates); err != nil {
		return nil, err
	}
	if o.conns < 1 || o.concurrency < 1 || o.roomSize < 1 {
		return nil, errors.New("-conns, -concurrency and -room-size must be at least 1")
	}
	if o.size < 40 || o.size > protocol.MaxBody {
		return nil, fmt.Errorf("-size must be between 40 and %d bytes", protocol.MaxBody)
	}
	if o.handshakeFor <= 0 || !protocol.ValidRSAKeySize(o.signBits) {
		return nil, errors.New("-handshake-for must be positive, -sign-bits 2048, 3072 or 4096")
	}
	if o.duration <= 0 || o.keys < 0 || !protocol.ValidRSAKeySize(o.keyBits) {
		return nil, errors.New("-duration must be positive, -keys at least 0, -key-bits 2048, 3072 or 4096")
	}
	if o.pairs < 1 || o.convRate <= 0 || o.convFor <= 0 || o.identityKeys < 1 || !protocol.ValidRSAKeySize(o.identityBits) {
		return nil, errors.New("-pairs, -conv-rate, -conv-for and -identity-keys must be positive, -identity-bits 2048, 3072 or 4096")
	}
	if !protocol.ValidUserName(o.botName) || o.botUsers < 1 || o.botRooms < 1 || o.botRate <= 0 || o.botFor <= 0 || o.botWait < 0 {
		return nil, errors.New("-bot must be a user name; -bot-users, -bot-rooms, -bot-rate and -bot-for positive, -bot-wait at least 0")
	}
	return o, nil
}

func positiveInts(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Report is everything one run measured; -json writes it.
type Report struct {
	Date        string           `json:"date"`
	Target      string           `json:"target"`
	URL         string           `json:"url"`
	CPUs        int              `json:"cpus"`
	SessionKeys string           `json:"session_keys"`
	Handshake   *HandshakeResult `json:"handshake,omitempty"`
	Connect     *ConnectResult   `json:"connect,omitempty"`
	Resume      *ResumeResult    `json:"resume,omitempty"`
	Fanout      []*FanoutResult  `json:"fanout,omitempty"`
	Conv        *ConvResult      `json:"conv,omitempty"`
	Bot         *BotResult       `json:"bot,omitempty"`
}

// run is the whole command: parse, prepare keys, run the scenarios, print.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	verify, err := identityCheck(ctx, o)
	if err != nil {
		return err
	}
	l := &loader{o: o, verify: verify, progress: stderr}
	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Target: o.target, URL: o.url, CPUs: runtime.NumCPU()}
	switch {
	case o.target == targetCentrifugo:
		rep.SessionKeys = "Centrifugo: no handshake, no session keys, no encryption (plain JSON over WebSocket)"
	case o.keys > 0:
		fmt.Fprintf(stderr, "generating %d RSA-%d session keys…\n", o.keys, o.keyBits)
		if l.pool, err = newKeyPool(o.keys, o.keyBits); err != nil {
			return err
		}
		rep.SessionKeys = fmt.Sprintf("pool of %d pre-generated RSA-%d keys, reused round robin: client key generation is not measured", o.keys, o.keyBits)
	default:
		rep.SessionKeys = fmt.Sprintf("a fresh RSA-%d key per dial, generated inside the measurement", o.keyBits)
	}
	fmt.Fprintf(stdout, "load: %s, %d CPUs, %s\n", o.url, rep.CPUs, rep.SessionKeys)
	for _, s := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		switch s {
		case "handshake":
			rep.Handshake, err = l.handshake(ctx)
			if err == nil {
				rep.Handshake.print(stdout)
			}
		case "connect":
			rep.Connect, err = l.connect(ctx)
			if err == nil {
				rep.Connect.print(stdout)
			}
		case "resume":
			rep.Resume, err = l.resume(ctx)
			if err == nil {
				rep.Resume.print(stdout)
			}
		case "fanout":
			for _, m := range o.members {
				var fr *FanoutResult
				fr, err = l.fanout(ctx, m)
				if err != nil {
					break
				}
				rep.Fanout = append(rep.Fanout, fr)
				fr.print(stdout)
			}
		case "conv":
			rep.Conv, err = l.conv(ctx)
			if err == nil {
				rep.Conv.print(stdout)
			}
		case "bot":
			rep.Bot, err = l.botLoad(ctx)
			if err == nil {
				rep.Bot.print(stdout)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if o.htmlPath != "" {
		f, err := os.Create(o.htmlPath)
		if err != nil {
			return fmt.Errorf("write -html: %w", err)
		}
		err = writeHTML(f, rep)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write -html: %w", err)
		}
	}
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write -json: %w", err)
		}
	}
	return nil
}

// identityCheck pins -pin, or the fingerprint the server's /identity
// gives; Centrifugo (-target) has no identity, so nothing.
func identityCheck(ctx context.Context, o *options) (func(protocol.Fingerprint) error, error) {
	if o.target == targetCentrifugo {
		return nil, nil // no identity to pin
	}
	if o.pin != "" {
		fp, err := protocol.ParseFingerprint(o.pin)
		if err != nil {
			return nil, fmt.Errorf("-pin: %w", err)
		}
		return client.Pin(fp), nil
	}
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	u.Path = "/identity"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the identity fingerprint: %w", err)
	}
	defer resp.Body.Close()
	var id struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil {
		return nil, fmt.Errorf("fetch the identity fingerprint: %w", err)
	}
	fp, err := protocol.ParseFingerprint(id.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("the server's /identity: %w", err)
	}
	return client.Pin(fp), nil
}
