// Package broker carries room traffic between the hubs of the server's
// nodes.
//
// A hub publishes every message for a room to the room's channel and
// subscribes to the channels of the rooms its local clients are in; the
// [Broker] delivers each published message to the [Handler] of every broker
// subscribed to its channel — the publisher's own included.
//
// Two backends implement Broker:
//
//   - [MemoryBroker] (broker_memory.go) for a single node: Publish calls the
//     handler directly, in the publisher's goroutine;
//   - [RedisBroker] (broker_redis.go) for several nodes behind one Redis: one
//     Redis Pub/Sub connection per node, channel <prefix>broker:<channel>.
//
// The Redis broker seals every payload with AES-256-GCM under a key shared by
// the nodes, with the Redis channel name as additional data, so that whoever
// can read Redis (or its network traffic) sees channel names and sizes but
// no message content, and cannot inject or move messages between channels.
// Payloads that fail to open are dropped and counted ([RedisBroker.Dropped]).
// The broker does not detect a sealed payload published again to its own
// channel; replay protection is the job of message ids (see
// internal/ephemeral's NonceSet).
//
// Delivery is at most once: Redis Pub/Sub keeps nothing, so a node that is
// disconnected from Redis misses what is published meanwhile. The hub must
// treat the broker as a fast path and let clients catch up from stored
// history after a reconnect.
package broker
