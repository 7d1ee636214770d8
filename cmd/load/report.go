package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"time"
)

// HistBin is one bar of a latency histogram: deliveries whose latency was
// at least From and below To milliseconds.
type HistBin struct {
	From  float64 `json:"from_ms"`
	To    float64 `json:"to_ms"`
	Count int     `json:"count"`
}

// The latency histogram's bins: histPerDecade per decade from histLowest
// milliseconds.
const (
	histPerDecade = 5
	histLowest    = 0.1
)

// latencyHistogram counts d in logarithmic bins, five per decade from
// 0.1 ms; bins before the first and after the last non-empty one are
// left out.
func latencyHistogram(d []time.Duration) []HistBin {
	if len(d) == 0 {
		return nil
	}
	const perDecade, lowest = histPerDecade, histLowest
	var bins []HistBin
	for i := 0; i < 7*perDecade; i++ { // 0.1 ms … 1,000 s
		bins = append(bins, HistBin{From: lowest * math.Pow(10, float64(i)/perDecade), To: lowest * math.Pow(10, float64(i+1)/perDecade)})
	}
	for _, x := range d {
		ms := float64(x) / float64(time.Millisecond)
		i := 0
		if ms > lowest {
			i = int(math.Floor(math.Log10(ms/lowest) * perDecade))
		}
		bins[min(max(i, 0), len(bins)-1)].Count++
	}
	first, last := 0, len(bins)-1
	for first < last && bins[first].Count == 0 {
		first++
	}
	for last > first && bins[last].Count == 0 {
		last--
	}
	return bins[first : last+1]
}

// throughputSeries is deliveries per second in 100 ms steps from start
// to the last receipt.
func throughputSeries(start time.Time, at []time.Time) []float64 {
	const step = 100 * time.Millisecond
	var out []float64
	for _, t := range at {
		i := int(t.Sub(start) / step)
		if i < 0 {
			continue
		}
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i] += float64(time.Second / step)
	}
	return out
}

// plot is one SVG chart, laid out in Go so that the template only prints
// numbers.
type plot struct {
	Title          string
	W, H           int
	Bars           []bar
	XLabels        []axisLabel
	YLabels        []axisLabel
	XTitle, YTitle string
}

type bar struct {
	X, Y, W, H float64
	Tip        string
}

type axisLabel struct {
	X, Y float64
	Text string
}

const (
	plotW, plotH           = 640, 240
	padL, padR, padT, padB = 70, 10, 20, 40
	innerW, innerH         = plotW - padL - padR, plotH - padT - padB
)

// barPlot lays out values as bars with labels under some of them.
func barPlot(title, xTitle, yTitle string, values []float64, label func(i int) string, every int) plot {
	p := plot{Title: title, W: plotW, H: plotH, XTitle: xTitle, YTitle: yTitle}
	top := 0.0
	for _, v := range values {
		top = math.Max(top, v)
	}
	if top == 0 || len(values) == 0 {
		return p
	}
	w := float64(innerW) / float64(len(values))
	for i, v := range values {
		h := v / top * innerH
		p.Bars = append(p.Bars, bar{X: padL + float64(i)*w, Y: padT + innerH - h, W: math.Max(w-1, 1), H: h, Tip: fmt.Sprintf("%s: %.0f", label(i), v)})
		if every > 0 && i%every == 0 {
			p.XLabels = append(p.XLabels, axisLabel{X: padL + float64(i)*w, Y: plotH - padB + 14, Text: label(i)})
		}
	}
	for _, f := range []float64{0, 0.5, 1} {
		p.YLabels = append(p.YLabels, axisLabel{X: padL - 6, Y: padT + innerH - f*innerH + 4, Text: fmt.Sprintf("%.0f", f*top)})
	}
	return p
}

// reportRound is one fan-out round's section of the HTML report.
type reportRound struct {
	Heading    string
	Summary    string
	Latency    plot
	Throughput plot
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>load report {{.Date}}</title>
<style>body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}svg{background:#fafafa;border:1px solid #ddd}
rect.bar{fill:#3a6ea5}text{font-size:11px;fill:#333}text.t{font-size:13px;font-weight:bold}</style></head>
<body><h1>Load report</h1>
<p>{{.Date}}, {{.URL}}, {{.CPUs}} CPUs. {{.Keys}}</p>
{{range .Rounds}}<h2>{{.Heading}}</h2><p>{{.Summary}}</p>
{{template "plot" .Latency}}{{template "plot" .Throughput}}
{{else}}<p>No fan-out round was run.</p>{{end}}
</body></html>
{{define "plot"}}<figure><svg role="img" aria-label="{{.Title}}" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" xmlns="http://www.w3.org/2000/svg">
<text class="t" x="70" y="14">{{.Title}}</text>
<line x1="70" y1="200" x2="630" y2="200" stroke="#999"/><line x1="70" y1="20" x2="70" y2="200" stroke="#999"/>
{{range .Bars}}<rect class="bar" x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" width="{{printf "%.1f" .W}}" height="{{printf "%.1f" .H}}"><title>{{.Tip}}</title></rect>
{{end}}{{range .XLabels}}<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}">{{.Text}}</text>
{{end}}{{range .YLabels}}<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" text-anchor="end">{{.Text}}</text>
{{end}}<text x="350" y="236" text-anchor="middle">{{.XTitle}}</text>
<text x="12" y="110" transform="rotate(-90 12 110)" text-anchor="middle">{{.YTitle}}</text>
</svg></figure>{{end}}`))

// writeHTML writes rep's fan-out rounds as an HTML page with an SVG
// latency histogram and throughput-over-time plot per round.
func writeHTML(w io.Writer, rep *Report) error {
	data := struct {
		Date, URL, Keys string
		CPUs            int
		Rounds          []reportRound
	}{Date: rep.Date, URL: rep.URL, Keys: rep.SessionKeys, CPUs: rep.CPUs}
	for _, f := range rep.Fanout {
		for _, r := range f.Rounds {
			hist := make([]float64, len(r.Histogram))
			for i, b := range r.Histogram {
				hist[i] = float64(b.Count)
			}
			bins := r.Histogram
			lat := barPlot("delivery latency", "latency (ms, logarithmic bins)", "deliveries", hist,
				func(i int) string { return fmt.Sprintf("%.3g", bins[i].From) }, 2)
			thr := barPlot("deliveries per second over time", "seconds since the round began (100 ms bars)", "deliveries/s", r.Throughput,
				func(i int) string { return fmt.Sprintf("%.1f", float64(i)/10) }, max(len(r.Throughput)/8, 1))
			data.Rounds = append(data.Rounds, reportRound{
				Heading: fmt.Sprintf("%d members, %d publishes/s", f.Members, r.Rate),
				Summary: fmt.Sprintf("%d of %d delivered, %.0f deliveries/s; latency p50 / p90 / p99 / p99.9 / max %s ms; p99 < 50 ms with nothing lost: %s.",
					r.Delivered, r.Expected, r.DeliveryRate, r.Latency, yesNo(r.Held)),
				Latency: lat, Throughput: thr,
			})
		}
	}
	if rep.Conv != nil {
		data.Rounds = append(data.Rounds, rep.Conv.htmlRound())
	}
	if rep.Bot != nil {
		data.Rounds = append(data.Rounds, rep.Bot.htmlRound())
	}
	return reportTemplate.Execute(w, data)
}
