package broker

import "errors"

// Why the replay guard turns a payload away. Both are counted in Dropped;
// neither leaves the package.
var (
	errStale    = errors.New("broker: publish time outside the window")
	errReplayed = errors.New("broker: nonce already seen")
)

// nonceSize is the size of the AES-GCM nonce in a sealed payload.
const nonceSize = 12

// seenEntry is one remembered nonce and the Unix millisecond after which a
// payload carrying it fails the time check anyway.
type seenEntry struct {
	expires int64
	nonce   [nonceSize]byte
}

// replayGuard decides whether an authenticated payload is fresh: its publish
// time must be within maxAge of now, in either direction, and its nonce must
// not have been seen within that window. It remembers at most max nonces.
//
// A nonce is kept until its payload's publish time + maxAge: after that a
// copy of the payload fails the time check, so the nonce can be forgotten.
// The set is swept lazily, by admit. When it is full, admit forgets the
// nonce that expires first, so a payload that arrives more than max
// payloads later can then be replayed once, within its window.
//
// A replayGuard is not safe for concurrent use; the Redis broker's reader
// goroutine owns its guard.
type replayGuard struct {
	maxAge int64 // milliseconds
	max    int

	seen map[[nonceSize]byte]struct{}
	heap []seenEntry // min-heap on expires; the same nonces as seen
	peak int         // the most entries seen has held since it was made
}

// shrinkBelow is the size under which the guard never rebuilds its map.
const shrinkBelow = 1024

func newReplayGuard(maxAgeMillis int64, maxSeen int) *replayGuard {
	return &replayGuard{
		maxAge: maxAgeMillis,
		max:    maxSeen,
		seen:   make(map[[nonceSize]byte]struct{}),
	}
}

// admit checks a payload with nonce n and publish time published (Unix
// milliseconds) against the receiver's clock now (Unix milliseconds). It
// returns errStale or errReplayed to drop it; otherwise it records n and
// returns nil. Only authenticated payloads may be admitted: the guard trusts
// that the same nonce means the same payload, with the same publish time.
func (g *replayGuard) admit(n [nonceSize]byte, published, now int64) error {
	// published comes from one of our nodes (it is authenticated), and now
	// and maxAge are far from the limits of int64: nothing overflows.
	if published < now-g.maxAge || published > now+g.maxAge {
		return errStale
	}
	g.sweep(now)
	if _, ok := g.seen[n]; ok {
		return errReplayed
	}
	for len(g.heap) >= g.max {
		g.pop()
	}
	g.seen[n] = struct{}{}
	g.push(seenEntry{expires: published + g.maxAge, nonce: n})
	g.peak = max(g.peak, len(g.heap))
	return nil
}

// len returns how many nonces the guard remembers.
func (g *replayGuard) len() int { return len(g.heap) }

// sweep forgets the nonces whose payloads fail the time check at now, and
// gives memory back once the set has shrunk to a quarter of its peak (Go
// maps never shrink by themselves).
func (g *replayGuard) sweep(now int64) {
	for len(g.heap) > 0 && g.heap[0].expires < now {
		g.pop()
	}
	if g.peak >= shrinkBelow && len(g.heap) < g.peak/4 {
		seen := make(map[[nonceSize]byte]struct{}, len(g.heap))
		for _, e := range g.heap {
			seen[e.nonce] = struct{}{}
		}
		g.seen = seen
		g.heap = append([]seenEntry(nil), g.heap...)
		g.peak = len(g.heap)
	}
}

// push adds e to the heap (not to seen).
func (g *replayGuard) push(e seenEntry) {
	g.heap = append(g.heap, e)
	i := len(g.heap) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if g.heap[parent].expires <= g.heap[i].expires {
			break
		}
		g.heap[parent], g.heap[i] = g.heap[i], g.heap[parent]
		i = parent
	}
}

// pop forgets the nonce that expires first, from the heap and from seen.
func (g *replayGuard) pop() {
	last := len(g.heap) - 1
	delete(g.seen, g.heap[0].nonce)
	g.heap[0] = g.heap[last]
	g.heap = g.heap[:last]
	i := 0
	for {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < last && g.heap[l].expires < g.heap[smallest].expires {
			smallest = l
		}
		if r < last && g.heap[r].expires < g.heap[smallest].expires {
			smallest = r
		}
		if smallest == i {
			return
		}
		g.heap[i], g.heap[smallest] = g.heap[smallest], g.heap[i]
		i = smallest
	}
}
