package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// burn uses about d of CPU time on this goroutine.
func burn(d time.Duration) {
	start := time.Now()
	h := sha256.Sum256(nil)
	for time.Since(start) < d {
		for range 1000 {
			h = sha256.Sum256(h[:])
		}
	}
}

func rusageSeconds(t *testing.T) float64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// The CPU time parsed from this process's real /proc/self/stat is the one
// the kernel reports through getrusage, to within a few clock ticks.
func TestProcCPUSecondsSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	if hz := clockTicks(); hz != 100 {
		t.Errorf("USER_HZ from /proc/self/auxv = %v, Linux's is 100", hz)
	}
	burn(300 * time.Millisecond)
	before := rusageSeconds(t)
	got, err := procCPUSeconds("self")
	if err != nil {
		t.Fatal(err)
	}
	after := rusageSeconds(t)
	// /proc/PID/stat counts whole ticks (10 ms); the race detector's
	// threads may run between the readings.
	const slack = 0.1
	if got < before-slack || got > after+slack {
		t.Errorf("/proc/self/stat says %.3f s of CPU, getrusage %.3f–%.3f s", got, before, after)
	}
	if got < 0.2 {
		t.Errorf("/proc/self/stat says %.3f s after burning 0.3 s", got)
	}
}

// The fields are counted from the last ')': a command name holding
// spaces and parentheses does not shift them.
func TestParseProcStatCommandName(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	want, err := parseProcStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	odd := append(append(append([]byte{}, stat[:open]...), "(a) b (c d) 1 2 3"...), stat[end:]...)
	got, err := parseProcStat(odd)
	if err != nil || got != want {
		t.Errorf("with command name %q: %d, %v; want %d", "a) b (c d) 1 2 3", got, err, want)
	}
	// utime and stime are fields 14 and 15: set them and read them back.
	fields := strings.Fields(string(stat[end+1:]))
	fields[11], fields[12] = "1234", "5678"
	changed := append(append([]byte{}, stat[:end+1]...), " "+strings.Join(fields, " ")+"\n"...)
	if got, err := parseProcStat(changed); err != nil || got != 1234+5678 {
		t.Errorf("utime 1234 + stime 5678: got %d, %v", got, err)
	}
	for _, bad := range []string{"", "12 (x", "12 (x) S 1 2", "12 (x) S 1 2 3 4 5 6 7 8 9 10 u 12"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestAuxvValue(t *testing.T) {
	var v []byte
	for _, kv := range [][2]uint64{{6, 4096}, {atClkTck, 250}, {0, 0}, {atClkTck, 1}} {
		var b [16]byte
		binary.NativeEndian.PutUint64(b[:], kv[0])
		binary.NativeEndian.PutUint64(b[8:], kv[1])
		v = append(v, b[:]...)
	}
	if hz, ok := auxvValue(v, atClkTck); !ok || hz != 250 {
		t.Errorf("AT_CLKTCK = %d, %v; want 250", hz, ok)
	}
	if _, ok := auxvValue(v[:16], atClkTck); ok {
		t.Error("found AT_CLKTCK in a vector without it")
	}
}

// The CPU time read from a real Prometheus handler with the process
// collector (what the server's -metrics-addr serves) is this process's.
func TestMetricsCPUSeconds(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process_cpu_seconds_total is exported on Linux only")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	burn(200 * time.Millisecond)
	got, err := metricsCPUSeconds(context.Background(), hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	self, err := procCPUSeconds("self")
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0.1 || math.Abs(got-self) > 0.1 {
		t.Errorf("/metrics says %.3f s of CPU, /proc/self/stat %.3f s", got, self)
	}
	if _, err := parseMetricsCPU(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Error("no process_cpu_seconds_total, no error")
	}
}

// With -server-pid (the server runs in this test's process) the handshake
// and resume storms report the server's CPU per operation and the CPU
// ratio; the figures are consistent with each other.
func TestStormsReportServerCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	url := startServer(t)
	rep, out := runJSON(t, context.Background(), "-url", url, "-scenario", "handshake,resume", "-handshake-for", "2s", "-sign-bits", "2048",
		"-concurrency", "4", "-resume-for", "1s", "-keys", "2", "-server-pid", strconv.Itoa(os.Getpid()))
	for _, want := range []string{"| server CPU per handshake |", "| handshakes per server CPU-second ÷ signatures per CPU-second |", "| server CPU per resumption |"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	h := rep.Handshake
	if h == nil || h.Handshakes == 0 || h.SignPerCPUSecond <= 0 || h.CPU.ServerSeconds <= 0 || h.CPURatio <= 0 {
		t.Fatalf("handshake: %+v", h)
	}
	if d := h.CPU.ServerMsPerOp - 1000*h.CPU.ServerSeconds/float64(h.Handshakes); math.Abs(d) > 1e-9 {
		t.Errorf("server ms per handshake %v inconsistent with %v s over %d", h.CPU.ServerMsPerOp, h.CPU.ServerSeconds, h.Handshakes)
	}
	// Server and load tool are one process here, so both read the same
	// CPU time: the same figure, to within a clock tick or two.
	if math.Abs(h.CPU.ServerSeconds-h.CPU.ClientSeconds) > 0.05 {
		t.Errorf("one process, two CPU times: server %.3f s, self %.3f s", h.CPU.ServerSeconds, h.CPU.ClientSeconds)
	}
	if want := h.CPU.OpsPerServerCPUSecond / h.SignPerCPUSecond; math.Abs(h.CPURatio-want) > 1e-9 {
		t.Errorf("CPU ratio %v, want %v", h.CPURatio, want)
	}
	if r := rep.Resume; r == nil || r.Resumed == 0 || r.CPU.ServerSeconds <= 0 || r.CPU.ServerMsPerOp <= 0 {
		t.Errorf("resume: %+v", rep.Resume)
	}
}
