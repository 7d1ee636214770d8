// Command chat is the messenger's command-line client.
//
// Interactively it joins a room, sends every line typed to it and prints
// what others say; lines starting with "/" are commands (/help lists
// them). For scripts, -send says one message and exits once the server
// has acknowledged it, and -listen (usually with -json) prints what
// arrives for a while. Every flag has an environment-variable twin
// (MESSENGER_SERVER for -server, …); run chat -h for the list.
//
// Accounts: chat register -user NAME generates the user's keys, registers
// them with a password and keeps them in the profile
// $XDG_CONFIG_HOME/messenger/profiles/NAME/; chat -user NAME then signs
// in with those keys alone, on every connection. chat login -user NAME
// -new-keys replaces the keys (a new device, or a reset), chat passwd
// -user NAME changes the password (closing every other session of the
// account), and chat fingerprint -user NAME [USER] prints the key
// fingerprints people compare. Without -user, chat joins anonymously, which only servers
// started with -anonymous allow.
//
// The server's identity key is pinned on first use in
// $XDG_CONFIG_HOME/messenger/known_hosts, or given with -pin.
//
// Exit status: 0 ok, 1 runtime or protocol error (among them auth_failed
// and rate_limited), 2 usage error (among them a -user without keys), 3
// the server's identity key does not match the pinned one.
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(exitCode(err))
	}
}
