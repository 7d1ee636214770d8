package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// compareUsage is `load compare`'s help.
const compareUsage = `usage: load compare [-html FILE] DIR

Reads the -json reports in DIR named SHAPE.TARGET.rROUND.json (what
cmd/load/compare.sh writes: one file per shape, server and round) and
prints, per shape, one Markdown table of every measure's median and
min–max over the rounds, one column per server (messenger first).
With -html, it also writes an HTML page with each fan-out round's
latency histogram and deliveries-over-time plot, server beside server.`

// runCompare is `load compare [-html FILE] DIR`.
func runCompare(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	htmlPath := fs.String("html", "", "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errors.New(compareUsage)
	}
	dir := fs.Arg(0)
	runs, err := readRuns(dir)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("compare: no SHAPE.TARGET.rROUND.json report in %s", dir)
	}
	writeComparison(stdout, runs)
	if *htmlPath == "" {
		return nil
	}
	f, err := os.Create(*htmlPath)
	if err != nil {
		return fmt.Errorf("compare -html: %w", err)
	}
	err = writeCompareHTML(f, runs, targetsOf(runs))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compare -html: %w", err)
	}
	return nil
}

// compareRun is one report of a comparison sitting.
type compareRun struct {
	shape, target string
	round         int
	at            time.Time // the file's time: shapes are listed in run order
	rep           *Report
}

// readRuns reads every SHAPE.TARGET.rROUND.json in dir.
func readRuns(dir string) ([]compareRun, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var runs []compareRun
	for _, p := range paths {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(p), ".json"), ".")
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "r") {
			continue
		}
		round, err := strconv.Atoi(parts[2][1:])
		if err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, fmt.Errorf("compare: %s: %w", p, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		runs = append(runs, compareRun{shape: parts[0], target: parts[1], round: round, at: fi.ModTime(), rep: &rep})
	}
	return runs, nil
}

// measure is one figure of one report; rows sort by key, then name.
type measure struct {
	key  [3]int // group (0: connect, else room size), publish rate, order
	name string
	v    float64
}

// measures lists what a report measured, as the comparison's rows.
func measures(rep *Report) []measure {
	var out []measure
	if c := rep.Connect; c != nil {
		add := func(i int, name string, v float64) { out = append(out, measure{[3]int{0, 0, i}, name, v}) }
		add(0, "connections established", float64(c.Established))
		add(1, "time to open them all (s)", c.Seconds)
		add(2, "connections per second", c.PerSecond)
		add(3, "dial + join latency p99 (ms)", c.Latency.P99)
		if c.ServerRSSAfter > 0 {
			add(4, "server RSS per idle connection (KiB)", c.KiBPerConn)
		}
		if c.MemoryAfter.HeapInuseKiB > 0 {
			add(5, "server Go heap per idle connection (KiB)", c.HeapKiBPerConn)
		}
	}
	for _, f := range rep.Fanout {
		m := f.Members
		out = append(out, measure{[3]int{m, 0, 0}, fmt.Sprintf("%d members: fill the room (s)", m), f.JoinSeconds})
		held := 0
		for _, r := range f.Rounds {
			if r.Held {
				held = max(held, r.Rate)
			}
			add := func(i int, what string, v float64) {
				out = append(out, measure{[3]int{m, r.Rate, i}, fmt.Sprintf("%d members, %d/s: %s", m, r.Rate, what), v})
			}
			add(0, "deliveries per second", r.DeliveryRate)
			add(1, "latency p50 (ms)", r.Latency.P50)
			add(2, "latency p99 (ms)", r.Latency.P99)
			add(3, "latency max (ms)", r.Latency.Max)
			if r.Expected > 0 {
				add(4, "delivered (% of expected)", 100*float64(r.Delivered)/float64(r.Expected))
			}
		}
		out = append(out, measure{[3]int{m, 0, 1}, fmt.Sprintf("%d members: highest rate held, p99 < 50 ms and nothing lost (/s; 0: none)", m), float64(held)})
	}
	return out
}

// writeComparison prints one table per shape, in the order the shapes
// were run.
func writeComparison(w io.Writer, runs []compareRun) {
	first := map[string]time.Time{}
	rounds := map[string]map[string]int{} // shape → target → runs
	for _, r := range runs {
		if t, ok := first[r.shape]; !ok || r.at.Before(t) {
			first[r.shape] = r.at
		}
		if rounds[r.shape] == nil {
			rounds[r.shape] = map[string]int{}
		}
		rounds[r.shape][r.target]++
	}
	targets := targetsOf(runs)
	shapes := make([]string, 0, len(first))
	for s := range first {
		shapes = append(shapes, s)
	}
	slices.SortFunc(shapes, func(a, b string) int { return first[a].Compare(first[b]) })
	for _, shape := range shapes {
		type row struct {
			key  [3]int
			name string
			vals map[string][]float64
		}
		rows := map[string]*row{}
		for _, r := range runs {
			if r.shape != shape {
				continue
			}
			for _, m := range measures(r.rep) {
				x := rows[m.name]
				if x == nil {
					x = &row{key: m.key, name: m.name, vals: map[string][]float64{}}
					rows[m.name] = x
				}
				x.vals[r.target] = append(x.vals[r.target], m.v)
			}
		}
		sorted := make([]*row, 0, len(rows))
		for _, x := range rows {
			sorted = append(sorted, x)
		}
		slices.SortFunc(sorted, func(a, b *row) int {
			if c := slices.Compare(a.key[:], b.key[:]); c != 0 {
				return c
			}
			return strings.Compare(a.name, b.name)
		})
		fmt.Fprintf(w, "\n### %s\n\n| measure |", shape)
		for _, t := range targets {
			fmt.Fprintf(w, " %s: median (min–max) of %d |", t, rounds[shape][t])
		}
		fmt.Fprint(w, "\n|---|")
		for range targets {
			fmt.Fprint(w, "---|")
		}
		fmt.Fprintln(w)
		for _, x := range sorted {
			fmt.Fprintf(w, "| %s |", x.name)
			for _, t := range targets {
				fmt.Fprintf(w, " %s |", spread(x.vals[t], rounds[shape][t]))
			}
			fmt.Fprintln(w)
		}
	}
}

// targetsOf is the servers the runs measured, the messenger first.
func targetsOf(runs []compareRun) []string {
	var targets []string
	for _, r := range runs {
		if !slices.Contains(targets, r.target) {
			targets = append(targets, r.target)
		}
	}
	slices.SortFunc(targets, func(a, b string) int {
		if (a == targetMessenger) != (b == targetMessenger) {
			if a == targetMessenger {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return targets
}

// spread is "median (min–max)" of vs, saying how many of the runs had the
// measure when some did not (a fan-out stops at its first saturated
// rate).
func spread(vs []float64, runs int) string {
	if len(vs) == 0 {
		return "—"
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	med := vs[n/2]
	if n%2 == 0 {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	s := figure(med)
	if n > 1 {
		s += " (" + figure(vs[0]) + "–" + figure(vs[n-1]) + ")"
	}
	if n < runs {
		s += fmt.Sprintf(", %d of %d runs", n, runs)
	}
	return s
}

// figure prints v as an integer when it is one or is 100 or more, else
// with three significant digits.
func figure(v float64) string {
	switch a := max(v, -v); {
	case a >= 100 || v == float64(int64(v)):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
