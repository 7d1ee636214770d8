package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
)

// compareTemplate lays out, per fan-out shape, each server's latency
// histogram (on the same bins) and deliveries-over-time plot side by
// side; it reuses the report's "plot" template.
var compareTemplate = template.Must(template.Must(reportTemplate.Clone()).New("compare").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>messenger beside {{.Others}}</title>
<style>body{font-family:sans-serif;max-width:84rem;margin:1rem auto;padding:0 1rem}svg{background:#fafafa;border:1px solid #ddd}
rect.bar{fill:#3a6ea5}text{font-size:11px;fill:#333}text.t{font-size:13px;font-weight:bold}.row{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}</style></head>
<body><h1>Fan-out: the messenger beside {{.Others}}</h1>
<p>From the reports of one comparison sitting (cmd/load/compare.sh), round {{.Round}} of each shape: the same load client, the same 256-byte bodies
carrying the publisher's clock, the same machine. Latency histograms of one shape share their bins.</p>
{{range .Shapes}}<h2>{{.Heading}}</h2>
<div class="row">{{range .Targets}}<div><p><b>{{.Target}}</b>: {{.Summary}}</p>{{template "plot" .Latency}}{{template "plot" .Throughput}}</div>{{end}}</div>
{{else}}<p>No fan-out round in these reports.</p>{{end}}
</body></html>`))

// compareShape is one room size and rate, every server's round of it.
type compareShape struct {
	Heading string
	Targets []compareTarget
}

type compareTarget struct {
	Target              string
	Summary             string
	Latency, Throughput plot
}

// writeCompareHTML draws the fan-out rounds of the lowest round number
// each shape has, server beside server.
func writeCompareHTML(w io.Writer, runs []compareRun, targets []string) error {
	type key struct{ members, rate int }
	round := map[string]int{} // shape → its lowest round
	for _, r := range runs {
		if cur, ok := round[r.shape]; !ok || r.round < cur {
			round[r.shape] = r.round
		}
	}
	found := map[key]map[string]*FanoutRound{}
	var keys []key
	lowest := 0
	for _, r := range runs {
		if r.round != round[r.shape] {
			continue
		}
		lowest = max(lowest, r.round)
		for _, f := range r.rep.Fanout {
			for _, fr := range f.Rounds {
				k := key{f.Members, fr.Rate}
				if found[k] == nil {
					found[k] = map[string]*FanoutRound{}
					keys = append(keys, k)
				}
				found[k][r.target] = fr
			}
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.members != b.members {
			return a.members - b.members
		}
		return a.rate - b.rate
	})
	var others []string
	for _, t := range targets {
		if t != targetMessenger {
			others = append(others, t)
		}
	}
	data := struct {
		Others string
		Round  int
		Shapes []compareShape
	}{Others: fmt.Sprint(others), Round: lowest}
	if len(others) == 1 {
		data.Others = others[0]
	}
	for _, k := range keys {
		s := compareShape{Heading: fmt.Sprintf("%d members, %d publishes/s", k.members, k.rate)}
		lo, hi := math.MaxInt, math.MinInt
		for _, fr := range found[k] {
			for _, b := range fr.Histogram {
				lo, hi = min(lo, histIndex(b.From)), max(hi, histIndex(b.From))
			}
		}
		for _, t := range targets {
			fr := found[k][t]
			if fr == nil {
				continue
			}
			var counts []float64
			var froms []float64
			if lo <= hi {
				counts = make([]float64, hi-lo+1)
				froms = make([]float64, hi-lo+1)
				for i := range froms {
					froms[i] = histFrom(lo + i)
				}
				for _, b := range fr.Histogram {
					counts[histIndex(b.From)-lo] += float64(b.Count)
				}
			}
			s.Targets = append(s.Targets, compareTarget{
				Target: t,
				Summary: fmt.Sprintf("%d of %d delivered, %.0f deliveries/s; latency p50 / p90 / p99 / p99.9 / max %s ms; p99 < 50 ms with nothing lost: %s.",
					fr.Delivered, fr.Expected, fr.DeliveryRate, fr.Latency, yesNo(fr.Held)),
				Latency: barPlot(t+": delivery latency", "latency (ms, logarithmic bins)", "deliveries", counts,
					func(i int) string { return fmt.Sprintf("%.3g", froms[i]) }, 2),
				Throughput: barPlot(t+": deliveries per second over time", "seconds since the round began (100 ms bars)", "deliveries/s", fr.Throughput,
					func(i int) string { return fmt.Sprintf("%.1f", float64(i)/10) }, max(len(fr.Throughput)/8, 1)),
			})
		}
		data.Shapes = append(data.Shapes, s)
	}
	return compareTemplate.ExecuteTemplate(w, "compare", data)
}

// histIndex is the index of latencyHistogram's bin that starts at from
// (ms); histFrom is its inverse.
func histIndex(from float64) int { return int(math.Round(math.Log10(from/histLowest) * histPerDecade)) }

func histFrom(i int) float64 { return histLowest * math.Pow(10, float64(i)/histPerDecade) }
