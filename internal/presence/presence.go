// Package presence keeps who is in which room across every node of a
// deployment: each node records the connections it holds in a room, with
// an expiry that the node keeps pushing forward while it runs (Refresh),
// so that the members of a node that crashed disappear within one TTL.
//
// Two backends implement [Registry]: [Memory] for a single node and
// [Redis] for nodes that share one Redis (standalone, Sentinel or
// Cluster). Both pass the contract test in contract_test.go.
package presence

import (
	"context"
	"errors"
	"time"
)

// Member is one connection in a room.
type Member struct {
	// ID identifies the connection; unique across the deployment (the
	// server uses a random UUID per connection).
	ID string `json:"-"`
	// Name is the display name the room shows.
	Name string `json:"n"`
	// Anon marks a connection that has not logged in.
	Anon bool `json:"a,omitempty"`
}

// Entry is one member of one room, as Refresh takes them.
type Entry struct {
	Room   string
	Member Member
}

// Registry records the members of rooms, deployment-wide.
type Registry interface {
	// Add records m as a member of room until TTL passes without a
	// Refresh of it. Adding a member again replaces its name.
	Add(ctx context.Context, room string, m Member) error
	// Remove forgets m's membership of room; removing a member that is
	// not recorded is not an error.
	Remove(ctx context.Context, room string, m Member) error
	// Refresh pushes the expiry of every entry TTL into the future; an
	// entry that expired or was removed meanwhile is not brought back.
	Refresh(ctx context.Context, entries []Entry) error
	// List returns up to limit members of room (0: none, only the count)
	// sorted by name, and how many members room has in all.
	List(ctx context.Context, room string, limit int) ([]Member, int, error)
	// TTL is how long an entry lives without a Refresh.
	TTL() time.Duration
}

// ErrUnavailable reports that the registry's backend (Redis) could not be
// reached. Errors the registries return wrap it and the cause.
var ErrUnavailable = errors.New("presence: backend unavailable")

// DefaultTTL is the TTL of a zero Config.
const DefaultTTL = 30 * time.Second
