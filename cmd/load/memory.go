package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// rssKiB reads a process's resident set size (VmRSS) from /proc, in KiB.
// pid 0 means not measured.
func rssKiB(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("load: server memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("load: no VmRSS in /proc/%d/status", pid)
}

// memSample is the server's memory at one moment: resident memory, and
// with -metrics-url the Go heap in use and the goroutine count too.
type memSample struct {
	RSSKiB       int64 `json:"rss_kib"`
	HeapInuseKiB int64 `json:"heap_inuse_kib,omitempty"`
	Goroutines   int64 `json:"goroutines,omitempty"`
}

// serverMemory reads the server's memory from its /metrics (-metrics-url,
// preferred: it also works for a server in a container or on another
// host) or from /proc (-server-pid). Neither set: a zero sample.
func serverMemory(ctx context.Context, o *options) (memSample, error) {
	if o.metricsURL != "" {
		return metricsMemory(ctx, o.metricsURL)
	}
	rss, err := rssKiB(o.serverPID)
	return memSample{RSSKiB: rss}, err
}

// metricsMemory reads process_resident_memory_bytes,
// go_memstats_heap_inuse_bytes and go_goroutines from a Prometheus text
// exposition at url.
func metricsMemory(ctx context.Context, url string) (memSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return memSample{}, fmt.Errorf("load: -metrics-url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return memSample{}, fmt.Errorf("load: server memory from /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return memSample{}, fmt.Errorf("load: server memory from /metrics: %s", resp.Status)
	}
	return parseMetricsMemory(resp.Body)
}

// parseMetricsMemory picks the three unlabelled samples out of a
// Prometheus text exposition; resident memory must be there.
func parseMetricsMemory(r io.Reader) (memSample, error) {
	var m memSample
	rss := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.RSSKiB, rss = int64(v)/1024, true
		case "go_memstats_heap_inuse_bytes":
			m.HeapInuseKiB = int64(v) / 1024
		case "go_goroutines":
			m.Goroutines = int64(v)
		}
	}
	if err := sc.Err(); err != nil {
		return memSample{}, fmt.Errorf("load: read /metrics: %w", err)
	}
	if !rss {
		return memSample{}, errors.New("load: /metrics has no process_resident_memory_bytes (not Linux, or not the server's metrics)")
	}
	return m, nil
}
