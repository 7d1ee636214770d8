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
//     Redis Pub/Sub connection per node, channel <prefix>broker:<channel>;
//     on a Redis Cluster sharded Pub/Sub (SPUBLISH/SSUBSCRIBE) on the
//     channel <prefix>broker:{<partition>}:<channel>, with one connection
//     per partition in use (16 partitions, spread over the shards by their
//     hash slots).
//
// The Redis broker seals every payload with AES-256-GCM under a key shared by
// the nodes, with the Redis channel name as additional data, so that whoever
// can read Redis (or its network traffic) sees channel names and sizes but
// no message content, and cannot inject or move messages between channels.
// It also seals the publish time in, so that whoever can write to Redis
// cannot deliver a captured payload again.
//
// # Sealed payload format
//
// A payload published on the Redis channel rc (the full name,
// "<prefix>broker:<channel>", or "<prefix>broker:{<partition>}:<channel>"
// on a Redis Cluster) is sent as, in format 1:
//
//	0x01 ‖ nonce ‖ AES-256-GCM(key, nonce, plaintext, additional data)
//
//	plaintext       = publish time ‖ payload
//	additional data = 0x01 ‖ rc
//
// where 0x01 is the format byte; nonce is 12 random bytes (crypto/rand),
// new for each payload; the publish time is the publishing node's clock in
// Unix milliseconds, as an 8-byte big-endian signed integer; and the
// AES-256-GCM output is the ciphertext (as long as the plaintext) followed by
// its 16-byte tag. A sealed payload is therefore 37 bytes longer than the
// payload. The format byte is authenticated as additional data, so a payload
// cannot be passed off as another format.
//
// A node drops a payload received on a subscribed channel, and counts it in
// [RedisBroker.Dropped], when
//
//  1. it is shorter than 37 bytes, its format byte is not 0x01, or it does
//     not open under the key with that additional data (altered, forged,
//     sealed under another key or for another channel);
//  2. its publish time is more than [RedisConfig.MaxAge] (default 2 minutes)
//     before or after the node's clock;
//  3. its nonce is in the node's set of seen nonces.
//
// Otherwise it adds the nonce to the set, to be kept until the publish time
// + MaxAge (after which a copy fails rule 2), and delivers the payload. The
// set is swept as payloads arrive. Nodes running the format before this one
// (no format byte, no publish time) and nodes running this one drop each
// other's payloads: upgrade every node at once.
//
// # What the replay check covers
//
// Each node keeps its own set, which is enough because Redis delivers each
// publish to each subscribed node once: a payload that reaches a node a
// second time was published again. A Redis writer who re-publishes a captured
// payload gets it delivered again only in these cases:
//
//   - The set holds at most [RedisConfig.MaxSeen] nonces (default 1,000,000).
//     When it is full, the node forgets the nonce that expires first. Whoever
//     can make the node receive more than MaxSeen payloads within MaxAge
//     (about 8,000 per second with the defaults; a user of the server can
//     produce genuine ones by sending messages) can replay the forgotten
//     payloads once each, within their MaxAge. The window bounds this: no
//     payload is delivered when the node's clock is more than MaxAge past
//     its publish time.
//   - A node only sees the payloads of the channels it is subscribed to. A
//     payload published while a node was not subscribed (for instance to
//     a room with no members on it then) can be re-published after it
//     subscribes, within MaxAge, and is delivered there once. A client that
//     received it through another node and then joined through this one
//     sees it twice.
//   - The window is measured on each node's wall clock. A node whose clock
//     steps back by D can deliver once more the payloads whose nonces
//     expired (and were forgotten) in the D before the step.
//
// The memory broker has no such attacker and does none of this.
//
// Delivery is at most once: Redis Pub/Sub keeps nothing, so a node that is
// disconnected from Redis misses what is published meanwhile, and the
// server stores no history that clients could catch up from (history is on
// the roadmap). The hub must treat the broker as a best-effort fast path.
package broker
