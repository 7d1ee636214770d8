// Command messenger is the messenger server.
//
// Usage: messenger [flags]; every flag has an environment-variable twin
// (MESSENGER_ADDR for -addr, …). Run it with -h for the list.
//
// messenger rotate-storage-key [flags] makes a new key current for the
// stored messages and rewraps them while servers run (docs/security.md
// §8.3).
package main

import (
	"context"
	"fmt"

	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "messenger:", err)
		os.Exit(1)
	}
}
