package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

// CPU time, so that a storm can say what one handshake cost the server
// (and this tool) in CPU when both share the machine's cores: wall-clock
// rates then measure the two together, CPU seconds each on its own.

// clockTicks is the kernel's USER_HZ, the unit of the times in
// /proc/PID/stat: what sysconf(_SC_CLK_TCK) returns. It is read once from
// the auxiliary vector (AT_CLKTCK in /proc/self/auxv, where the C
// library's sysconf takes it from too, so no cgo is needed); 100, the
// value on every Linux architecture Go supports, if that cannot be read.
var clockTicks = sync.OnceValue(func() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if hz, ok := auxvValue(b, atClkTck); ok && hz > 0 {
		return float64(hz)
	}
	return 100
})

// atClkTck is AT_CLKTCK, the auxiliary vector entry holding USER_HZ.
const atClkTck = 17

// auxvValue finds key in an auxiliary vector of native-endian 64-bit
// (key, value) pairs, as /proc/self/auxv holds on 64-bit Linux.
func auxvValue(auxv []byte, key uint64) (uint64, bool) {
	for len(auxv) >= 16 {
		k, v := binary.NativeEndian.Uint64(auxv), binary.NativeEndian.Uint64(auxv[8:])
		if k == key {
			return v, true
		}
		if k == 0 { // AT_NULL ends the vector
			break
		}
		auxv = auxv[16:]
	}
	return 0, false
}

// parseProcStat returns utime + stime, in clock ticks, from the contents
// of a /proc/PID/stat file (proc(5)). The command name, field 2, is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'; utime and stime are fields 14 and 15.
func parseProcStat(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("load: /proc stat: no command name")
	}
	f := strings.Fields(string(stat[end+1:])) // f[0] is field 3 (state)
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("load: /proc stat: %d fields after the command name, want at least %d", len(f), stime+1)
	}
	u, err := strconv.ParseUint(f[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("load: /proc stat utime: %w", err)
	}
	s, err := strconv.ParseUint(f[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("load: /proc stat stime: %w", err)
	}
	return u + s, nil
}

// procCPUSeconds is the CPU time (user + system, every thread) process pid
// ("self" for this one) has used so far, from /proc/PID/stat.
func procCPUSeconds(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("load: CPU time: %w", err)
	}
	ticks, err := parseProcStat(b)
	if err != nil {
		return 0, err
	}
	return float64(ticks) / clockTicks(), nil
}

// parseMetricsCPU returns process_cpu_seconds_total from a Prometheus
// text exposition.
func parseMetricsCPU(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || name != "process_cpu_seconds_total" {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return 0, fmt.Errorf("load: process_cpu_seconds_total %q: %w", value, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("load: read /metrics: %w", err)
	}
	return 0, errors.New("load: /metrics has no process_cpu_seconds_total (not Linux, or not the server's metrics)")
}

// metricsCPUSeconds reads process_cpu_seconds_total from the server's
// /metrics.
func metricsCPUSeconds(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("load: -metrics-url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("load: server CPU from /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("load: server CPU from /metrics: %s", resp.Status)
	}
	return parseMetricsCPU(resp.Body)
}

// cpuMeter reads the CPU time of the server (from -metrics-url, else
// -server-pid; neither: not measured) and of this tool.
type cpuMeter struct {
	o *options
}

// cpuReading is both processes' CPU time at one moment.
type cpuReading struct {
	server, self float64
	hasServer    bool
}

func (m cpuMeter) read(ctx context.Context) (cpuReading, error) {
	var r cpuReading
	var err error
	if r.self, err = procCPUSeconds("self"); err != nil {
		return r, err
	}
	switch {
	case m.o.metricsURL != "":
		r.server, err = metricsCPUSeconds(ctx, m.o.metricsURL)
		r.hasServer = err == nil
	case m.o.serverPID != 0:
		r.server, err = procCPUSeconds(strconv.Itoa(m.o.serverPID))
		r.hasServer = err == nil
	}
	return r, err
}

// CPUCost is what a storm of ops (handshakes, resumptions) cost in CPU
// time, the server's and this load tool's, over the same interval.
type CPUCost struct {
	// ServerSeconds is the server's CPU time (user + system) during the
	// storm; 0 when neither -server-pid nor -metrics-url was given.
	ServerSeconds float64 `json:"server_cpu_seconds,omitempty"`
	// ServerMsPerOp is ServerSeconds per op, in milliseconds.
	ServerMsPerOp float64 `json:"server_cpu_ms_per_op,omitempty"`
	// OpsPerServerCPUSecond is ops ÷ ServerSeconds: the rate the server
	// would reach with a whole core to itself and nothing else to do.
	OpsPerServerCPUSecond float64 `json:"ops_per_server_cpu_second,omitempty"`
	// ClientSeconds is this tool's own CPU time during the storm.
	ClientSeconds float64 `json:"client_cpu_seconds"`
	// ClientMsPerOp is ClientSeconds per op, in milliseconds.
	ClientMsPerOp float64 `json:"client_cpu_ms_per_op"`
}

// cost turns two readings around a storm of ops into a CPUCost.
func cost(before, after cpuReading, ops int) CPUCost {
	c := CPUCost{ClientSeconds: after.self - before.self}
	if before.hasServer && after.hasServer {
		c.ServerSeconds = after.server - before.server
	}
	if ops > 0 {
		c.ClientMsPerOp = 1000 * c.ClientSeconds / float64(ops)
		c.ServerMsPerOp = 1000 * c.ServerSeconds / float64(ops)
	}
	if c.ServerSeconds > 0 {
		c.OpsPerServerCPUSecond = float64(ops) / c.ServerSeconds
	}
	return c
}

// printRows adds the CPU rows to a result table; what names the op.
func (c CPUCost) printRows(w io.Writer, what string) {
	if c.ServerSeconds > 0 {
		fmt.Fprintf(w, "| server CPU time during the storm (user + system) | %.2f s |\n", c.ServerSeconds)
		fmt.Fprintf(w, "| server CPU per %s | %.3f ms |\n", what, c.ServerMsPerOp)
		fmt.Fprintf(w, "| %ss per server CPU-second | %.0f |\n", what, c.OpsPerServerCPUSecond)
	}
	fmt.Fprintf(w, "| load tool CPU per %s (this process, same cores) | %.3f ms |\n", what, c.ClientMsPerOp)
}
