// Command load drives a messenger server with many simulated clients, all
// built on pkg/client, and reports what it measured: connections and
// resumptions per second, room fan-out delivery rates and latency
// percentiles, errors by protocol code, and the server's memory per
// connection (from /proc when the server runs on the same machine).
//
// Usage: see docs/benchmarks.md ("Load tool") or run load -h. `load
// compare DIR` summarises the reports of cmd/load/compare.sh instead.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "compare" {
		err = runCompare(os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}
