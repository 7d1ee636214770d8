package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		vs   []float64
		runs int
		want string
	}{
		{nil, 3, "—"},
		{[]float64{51.25}, 1, "51.2"},
		{[]float64{3, 1, 2}, 3, "2 (1–3)"},
		{[]float64{40, 20}, 3, "30 (20–40), 2 of 3 runs"},
		{[]float64{0.5, 1.25, 0.75, 12000}, 4, "1 (0.50–12000)"},
	} {
		if got := spread(tc.vs, tc.runs); got != tc.want {
			t.Errorf("spread(%v, %d) = %q, want %q", tc.vs, tc.runs, got, tc.want)
		}
	}
}

// TestCompareTables writes reports as compare.sh names them and checks
// the tables `load compare` makes of them: shapes in run order, medians
// and spreads per server, the messenger's column first, a measure some
// rounds lack said so.
func TestCompareTables(t *testing.T) {
	dir := t.TempDir()
	at := time.Now().Add(-time.Hour)
	write := func(name string, rep *Report) {
		t.Helper()
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	connect := func(target string, perSec, kib float64) *Report {
		return &Report{Target: target, Connect: &ConnectResult{Established: 1000, Seconds: 1000 / perSec, PerSecond: perSec, ServerRSSAfter: 1, KiBPerConn: kib}}
	}
	fanout := func(target string, rates ...int) *Report {
		f := &FanoutResult{Members: 100, JoinSeconds: 2}
		for _, r := range rates {
			f.Rounds = append(f.Rounds, &FanoutRound{Rate: r, DeliveryRate: float64(100 * r), Expected: 10, Delivered: 10, Held: r < 500, Latency: Percentiles{P99: float64(r) / 10}})
		}
		return &Report{Target: target, Fanout: []*FanoutResult{f}}
	}
	for round, x := range []struct{ m, c float64 }{{100, 2000}, {80, 3000}, {90, 2500}} {
		r := round + 1
		write(fmt.Sprintf("connect-1000.messenger.r%d.json", r), connect(targetMessenger, x.m, 50+float64(r)))
		write(fmt.Sprintf("connect-1000.centrifugo.r%d.json", r), connect(targetCentrifugo, x.c, 48))
	}
	write("fanout.centrifugo.r1.json", fanout(targetCentrifugo, 100, 500))
	write("fanout.messenger.r1.json", fanout(targetMessenger, 100))
	write("fanout.messenger.r2.json", fanout(targetMessenger, 100, 500))
	write("runs.json", &Report{}) // not a run: ignored
	var out bytes.Buffer
	if err := runCompare([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"### connect-1000\n\n| measure | messenger: median (min–max) of 3 | centrifugo: median (min–max) of 3 |",
		"| connections per second | 90 (80–100) | 2500 (2000–3000) |",
		"| server RSS per idle connection (KiB) | 52 (51–53) | 48 (48–48) |",
		"### fanout\n\n| measure | messenger: median (min–max) of 2 | centrifugo: median (min–max) of 1 |",
		"| 100 members: highest rate held, p99 < 50 ms and nothing lost (/s; 0: none) | 100 (100–100) | 100 |",
		"| 100 members, 500/s: deliveries per second | 50000, 1 of 2 runs | 50000 |",
		"| 100 members, 100/s: latency p99 (ms) | 10 (10–10) | 10 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "### connect-1000") > strings.Index(got, "### fanout") {
		t.Errorf("shapes not in run order:\n%s", got)
	}
	if i, j := strings.Index(got, "100 members, 100/s: deliveries"), strings.Index(got, "100 members, 500/s: deliveries"); i < 0 || i > j {
		t.Errorf("rates not in order:\n%s", got)
	}
	if err := runCompare([]string{t.TempDir()}, &out); err == nil {
		t.Error("an empty directory compared")
	}
	if err := runCompare(nil, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("no directory: %v", err)
	}
}

// TestCompareHTML: `load compare -html` draws each fan-out round of the
// first round of its shape for every server, side by side, the latency
// histograms of one shape on the same bins.
func TestCompareHTML(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rep *Report) {
		t.Helper()
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	round := func(rate int, lat ...time.Duration) *FanoutRound {
		return &FanoutRound{Rate: rate, Expected: int64(len(lat)), Delivered: int64(len(lat)), Histogram: latencyHistogram(lat), Throughput: []float64{10, 20}}
	}
	ms := time.Millisecond
	// The messenger's latencies span 1–100 ms, Centrifugo's 0.2–2 ms:
	// both histograms must cover 0.2–100 ms.
	write("fanout.messenger.r1.json", &Report{Target: targetMessenger, Fanout: []*FanoutResult{{Members: 100, Rounds: []*FanoutRound{round(500, ms, 10*ms, 100*ms)}}}})
	write("fanout.centrifugo.r1.json", &Report{Target: targetCentrifugo, Fanout: []*FanoutResult{{Members: 100, Rounds: []*FanoutRound{round(500, ms/5, 2*ms)}}}})
	write("fanout.messenger.r2.json", &Report{Target: targetMessenger, Fanout: []*FanoutResult{{Members: 100, Rounds: []*FanoutRound{round(999, ms)}}}})
	page := filepath.Join(t.TempDir(), "cmp.html")
	var out bytes.Buffer
	if err := runCompare([]string{"-html", page, dir}, &out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	if n := strings.Count(html, "<svg"); n != 4 {
		t.Errorf("%d plots, want 4 (latency and throughput for each server)", n)
	}
	if !strings.Contains(html, "100 members, 500 publishes/s") || strings.Contains(html, "999 publishes/s") {
		t.Errorf("want the first round's shape only:\n%s", html)
	}
	m, c := strings.Index(html, "<b>messenger</b>"), strings.Index(html, "<b>centrifugo</b>")
	if m < 0 || c < m {
		t.Errorf("want the messenger first, then centrifugo")
	}
	// 0.2 ms (the bin from 0.158 ms) … 100 ms (the bin from 100 ms) at 5
	// bins per decade: 15 bins, in both histograms.
	hist := strings.Split(html, "delivery latency</text>")
	if len(hist) != 3 {
		t.Fatalf("%d latency plots", len(hist)-1)
	}
	for i, h := range hist[1:] {
		h = h[:strings.Index(h, "</svg>")]
		if n := strings.Count(h, `class="bar"`); n != 15 {
			t.Errorf("latency plot %d has %d bars, want 15 on the shared bins", i, n)
		}
	}
}
