package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The memory read from a real Prometheus handler with the process and Go
// collectors (what the server's -metrics-addr serves) is this process's.
func TestMetricsMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("process_resident_memory_bytes is exported on Linux only")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	m, err := metricsMemory(context.Background(), hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSSKiB <= 0 || m.HeapInuseKiB <= 0 || m.Goroutines <= 0 {
		t.Fatalf("read %+v, want every figure positive", m)
	}
	proc, err := rssKiB(0)
	if err != nil || proc != 0 {
		t.Fatalf("rssKiB(0) = %d, %v; want 0 (not measured)", proc, err)
	}
}

// What each bad /metrics answer gets: a clear error, never a zero reading
// taken for a measurement.
func TestMetricsMemoryRefusesBadInput(t *testing.T) {
	if _, err := parseMetricsMemory(strings.NewReader("# HELP x\ngo_goroutines 12\n")); err == nil || !strings.Contains(err.Error(), "process_resident_memory_bytes") {
		t.Errorf("no resident memory: %v, want an error naming it", err)
	}
	m, err := parseMetricsMemory(strings.NewReader("process_resident_memory_bytes{x=\"y\"} 1\nprocess_resident_memory_bytes 2.048e+06\ngo_memstats_heap_inuse_bytes nonsense\n"))
	if err != nil || m.RSSKiB != 2000 || m.HeapInuseKiB != 0 {
		t.Errorf("labelled and unparsable samples: %+v, %v; want only the plain RSS (2000 KiB)", m, err)
	}
	hs := httptest.NewServer(http.NotFoundHandler())
	defer hs.Close()
	if _, err := metricsMemory(context.Background(), hs.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404: %v, want an error with the status", err)
	}
}
