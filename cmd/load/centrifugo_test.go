package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The JSON in these tests is the examples of Centrifugo's client protocol
// documentation (centrifugal.dev, "Client protocol"), with the field
// names of its client.proto.

func TestCentrifugoEncodeCommands(t *testing.T) {
	data, err := publishData(`3:1795594328328000000:"quoted" \ body`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cmd  *cfCommand
		want string
	}{
		{&cfCommand{ID: 1, Subscribe: &cfChannelReq{Channel: "example"}}, `{"id":1,"subscribe":{"channel":"example"}}`},
		{&cfCommand{ID: 1, Connect: &cfConnectReq{Name: "load"}}, `{"id":1,"connect":{"name":"load"}}`},
		{&cfCommand{ID: 7, Publish: &cfPublishReq{Channel: "fan-1", Data: data}}, `{"id":7,"publish":{"channel":"fan-1","data":"3:1795594328328000000:\"quoted\" \\ body"}}`},
	} {
		b, err := encodeCommand(tc.cmd)
		if err != nil || string(b) != tc.want {
			t.Errorf("encodeCommand = %s, %v; want %s", b, err, tc.want)
		}
	}
}

func TestCentrifugoDecodeReplies(t *testing.T) {
	// One frame, several replies: line-delimited JSON, a ping among them.
	frame := []byte("{\"id\": 1, \"connect\": {\"client\": \"9336a229-2400-4ebc-8c50-0a643d22e8a0\", \"version\": \"6.9.1\", \"ping\": 25, \"pong\": true}}\n" +
		"{\"id\": 2, \"subscribe\": {}}\n" +
		"{}\n" +
		"{\"id\": 3, \"error\": {\"code\": 103, \"message\": \"permission denied\"}}\n" +
		"{\"push\": {\"channel\": \"fan-1\", \"pub\": {\"data\": \"1:1795594328328000000:xx\", \"info\": {\"user\": \"\", \"client\": \"c1\"}, \"offset\": 4}}}\n" +
		"{\"push\": {\"channel\": \"fan-1\", \"pub\": {\"data\": {\"input\": \"not a load body\"}}}}\n" +
		"{\"push\": {\"disconnect\": {\"code\": 3008, \"reason\": \"slow\"}}}\n")
	var got []*cfReply
	pings := 0
	err := eachLine(frame, func(line []byte) error {
		r, ping, err := decodeReply(line)
		if ping {
			pings++
		}
		if r != nil {
			got = append(got, r)
		}
		return err
	})
	if err != nil || pings != 1 || len(got) != 6 {
		t.Fatalf("eachLine: %v, %d pings, %d replies", err, pings, len(got))
	}
	if c := got[0].Connect; got[0].ID != 1 || c == nil || !c.Pong || c.Ping != 25 || c.Version != "6.9.1" {
		t.Errorf("connect reply: %+v %+v", got[0], c)
	}
	if got[1].ID != 2 || got[1].Error != nil {
		t.Errorf("subscribe reply: %+v", got[1])
	}
	if e := got[2].Error; got[2].ID != 3 || e == nil || e.Code != 103 || e.Message != "permission denied" {
		t.Errorf("error reply: %+v", got[2])
	}
	if p := got[3].Push; got[3].ID != 0 || p == nil || p.Channel != "fan-1" || p.Pub == nil || publicationBody(p.Pub.Data) != "1:1795594328328000000:xx" {
		t.Errorf("publication push: %+v", got[3])
	}
	if body := publicationBody(got[4].Push.Pub.Data); body != `{"input": "not a load body"}` {
		t.Errorf("non-string data = %q", body)
	} else if _, _, ok := parseHead(body); ok {
		t.Errorf("non-string data %q parsed as a load body", body)
	}
	if d := got[5].Push.Disconnect; d == nil || d.Code != 3008 || d.Message != "" {
		t.Errorf("disconnect push: %+v", d)
	}
	if _, _, err := decodeReply([]byte(`{"id": 1,`)); err == nil {
		t.Error("a truncated reply decoded")
	}
}

// TestCentrifugoErrorsCount: Centrifugo's error replies and disconnect
// codes are counted by number, apart from the messenger's codes.
func TestCentrifugoErrorsCount(t *testing.T) {
	errs := &errorCounts{}
	errs.add(&centrifugoError{Code: 103, Message: "permission denied"})
	errs.add(closeErrorCF(&websocket.CloseError{Code: 3012, Text: "no pong"}))
	errs.add(fmt.Errorf("join: %w", &centrifugoError{Code: 103}))
	errs.add(closeErrorCF(errors.New("read: connection reset")))
	want := map[string]int{"centrifugo_103": 2, "centrifugo_disconnect_3012": 1, "other": 1}
	if got := errs.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
}

func TestTargetOptions(t *testing.T) {
	o, err := parseOptions([]string{"-target", "centrifugo"}, &bytes.Buffer{})
	if err != nil || !slices.Equal(o.scenarios, []string{"connect", "fanout"}) {
		t.Errorf("-target centrifugo: %v, scenarios %v; want connect,fanout by default", err, o)
	}
	o, err = parseOptions(nil, &bytes.Buffer{})
	if err != nil || o.target != targetMessenger || !slices.Equal(o.scenarios, []string{"connect", "resume", "fanout"}) {
		t.Errorf("default: %v, %+v", err, o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-target", "nats"}, "-target: unknown target"},
		{[]string{"-target", "centrifugo", "-scenario", "connect,resume"}, "connect and fanout only"},
		{[]string{"-target", "centrifugo", "-scenario", "handshake"}, "connect and fanout only"},
	} {
		if _, err := parseOptions(tc.args, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// startCentrifugo runs the Centrifugo binary at bin on a free port of
// 127.0.0.1 with the configuration of docs/benchmarks.md (memory engine,
// anonymous connect, subscribe and publish in channels without a
// namespace, /metrics on) and a ping every second, so that a few seconds
// of idling show whether the load client answers pings. It returns the
// WebSocket URL and the /metrics URL; the server stops with the test.
func startCentrifugo(t *testing.T, bin string) (wsURL, metricsURL string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "warn"},
		"engine":      map[string]any{"type": "memory"},
		"client":      map[string]any{"allow_anonymous_connect_without_token": true, "ping_interval": "1s", "pong_timeout": "500ms"},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
			"allow_publish_for_client": true, "allow_publish_for_anonymous": true}},
		"prometheus": map[string]any{"enabled": true},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", path)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("centrifugo exited: %v\n%s", err, logs.String())
		default:
		}
		if resp, err := http.Get(base + "/metrics"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("centrifugo did not answer on %s in 30 s:\n%s", base, logs.String())
		}
	}
	return fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", port), base + "/metrics"
}

// TestCentrifugoTarget runs the connect and fanout scenarios against a
// real Centrifugo (CENTRIFUGO_BIN): every connection established and
// still there after idling through several pings, the server's memory
// read from its /metrics, every fan-out message delivered to every
// member.
func TestCentrifugoTarget(t *testing.T) {
	bin := os.Getenv("CENTRIFUGO_BIN")
	if bin == "" {
		t.Skip("CENTRIFUGO_BIN is not set: this test needs a Centrifugo v6 binary (go install github.com/centrifugal/centrifugo/v6@v6.9.1, several minutes; then CENTRIFUGO_BIN=$(go env GOPATH)/bin/centrifugo)")
	}
	wsURL, metricsURL := startCentrifugo(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, out := runJSON(t, ctx, "-target", "centrifugo", "-url", wsURL, "-metrics-url", metricsURL,
		"-conns", "12", "-concurrency", "4", "-room-size", "3", "-hold", "3500ms",
		"-members", "5", "-rates", "20", "-duration", "500ms", "-drain", "20s")
	for _, want := range []string{"Centrifugo: no handshake", "Centrifugo connect + subscribe of a 3-member room", "| established | 12 of 12 |", "## fanout: one room of 5 members"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if rep.Target != targetCentrifugo || rep.Handshake != nil || rep.Resume != nil {
		t.Errorf("report: target %q, handshake %v, resume %v", rep.Target, rep.Handshake, rep.Resume)
	}
	c := rep.Connect
	if c == nil || c.Established != 12 || len(c.Errors) != 0 || len(c.DroppedWhileIdle) != 0 || c.MemoryAfter.RSSKiB <= 0 || c.MemoryAfter.Goroutines <= c.MemoryBefore.Goroutines {
		t.Errorf("connect: %+v", c)
	}
	if len(rep.Fanout) != 1 || len(rep.Fanout[0].Rounds) != 1 {
		t.Fatalf("fanout: %+v", rep.Fanout)
	}
	r := rep.Fanout[0].Rounds[0]
	if r.Sent != 10 || r.Delivered != 50 || r.Expected != 50 || r.Latency.N != 50 || r.PublisherLost || len(r.ErrorAnswers) != 0 || len(r.Disconnected) != 0 {
		t.Errorf("fanout round: %+v", r)
	}
}

// TestCentrifugoRefusal: a publish Centrifugo refuses (a namespace that
// is not configured) comes back as an error answer counted by its code,
// and a refused subscribe fails the join.
func TestCentrifugoRefusal(t *testing.T) {
	bin := os.Getenv("CENTRIFUGO_BIN")
	if bin == "" {
		t.Skip("CENTRIFUGO_BIN is not set: this test needs a Centrifugo v6 binary")
	}
	wsURL, _ := startCentrifugo(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := dialCentrifugo(ctx, wsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := &errorCounts{}
	received := make(chan struct{})
	go func() {
		defer close(received)
		c.Receive(func(string, time.Time) {}, errs.add)
	}()
	var ce *centrifugoError
	if err := c.Join(ctx, "nons:room"); !errors.As(err, &ce) || ce.Disconnect {
		t.Errorf("subscribe to an unknown namespace: %v", err)
	}
	if err := c.Join(ctx, "room"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := c.Publish("nons:room", "x"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(errs.snapshot()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no error answer to a refused publish")
		}
	}
	if got := errs.snapshot(); len(got) != 1 || !strings.HasPrefix(formatErrors(got), "centrifugo_") {
		t.Errorf("error answers = %v", got)
	}
	c.Close()
	<-received
}
