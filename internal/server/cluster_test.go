package server

// Several nodes as one messenger (docs/protocol.md §8.7): three in-process
// nodes on their own ports share one real Redis (through a TCP proxy per
// node that a test can cut) and one real PostgreSQL database.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/pgtest"
	"github.com/secure-messenger/messenger/internal/presence"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// tcpProxy forwards connections to a Redis server until cut, which closes
// every connection and refuses new ones until restore: Redis unreachable
// from one node.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.accept()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := func() {
		c.Close()
		u.Close()
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, u)
		p.mu.Unlock()
	}
	go func() { _, _ = io.Copy(u, c); done() }()
	_, _ = io.Copy(c, u)
	done()
}

// cut closes every forwarded connection and refuses new ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	p.down = true
	conns := p.conns
	p.conns = make(map[net.Conn]struct{})
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// restore forwards again.
func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// killableRegistry is a presence registry that fails every call once
// killed: the registry of a node that crashed, which removes nothing.
type killableRegistry struct {
	presence.Registry
	dead chan struct{}
	once sync.Once
}

var errKilled = errors.New("node killed")

func (k *killableRegistry) kill() { k.once.Do(func() { close(k.dead) }) }
func (k *killableRegistry) killed() bool {
	select {
	case <-k.dead:
		return true
	default:
		return false
	}
}
func (k *killableRegistry) Add(ctx context.Context, room string, m presence.Member) error {
	if k.killed() {
		return errKilled
	}
	return k.Registry.Add(ctx, room, m)
}
func (k *killableRegistry) Remove(ctx context.Context, room string, m presence.Member) error {
	if k.killed() {
		return errKilled
	}
	return k.Registry.Remove(ctx, room, m)
}
func (k *killableRegistry) Refresh(ctx context.Context, e []presence.Entry) error {
	if k.killed() {
		return errKilled
	}
	return k.Registry.Refresh(ctx, e)
}

// clusterNode is one node of a test cluster.
type clusterNode struct {
	*testServer
	proxy *tcpProxy // nil on a Redis Cluster
	reg   *killableRegistry
}

// kill ends the node as a crash would: its registry and broker stop
// answering, then its connections drop; nothing is cleaned up.
func (n *clusterNode) kill() {
	n.reg.kill()
	if n.proxy != nil {
		n.proxy.cut()
	}
	_ = n.hub.Close()
	_ = n.http.Listener.Close()
	n.Server.mu.Lock()
	for c := range n.clients {
		_ = c.ws.NetConn().Close() // no close frame: the TCP connection just ends
	}
	n.Server.mu.Unlock()
}

// testCluster is n nodes sharing one Redis (each through its own proxy)
// and one PostgreSQL database.
type testCluster struct {
	rc     redis.UniversalClient // direct, for the test
	prefix string
	nodes  []*clusterNode
}

// presenceTTL is the test clusters' presence TTL: how long a killed
// node's members stay listed.
const presenceTTL = 2 * time.Second

// newTestCluster starts n nodes, each reaching the test Redis through its
// own proxy. It skips without Redis or PostgreSQL.
func newTestCluster(t *testing.T, n int, opts ...serverOption) *testCluster {
	t.Helper()
	rc, prefix := redistest.Client(t)
	return startTestCluster(t, n, rc, prefix, func() (redis.UniversalClient, *tcpProxy) {
		proxy := newTCPProxy(t, redistest.Addr())
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{proxy.addr()}}), proxy
	}, opts...)
}

// newTestShardedCluster starts n nodes on a 3-shard Redis Cluster started
// for the test (each node with its own cluster client, so the broker uses
// sharded Pub/Sub). It skips without redis-server or PostgreSQL.
func newTestShardedCluster(t *testing.T, n int, opts ...serverOption) *testCluster {
	t.Helper()
	addrs := redistest.StartCluster(t, 3)
	rc, prefix := redistest.ClusterClient(t, addrs)
	return startTestCluster(t, n, rc, prefix, func() (redis.UniversalClient, *tcpProxy) {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), nil
	}, opts...)
}

// startTestCluster starts n nodes under prefix, each with the Redis client
// (and proxy, if any) that newClient makes; rc is the test's own client.
func startTestCluster(t *testing.T, n int, rc redis.UniversalClient, prefix string,
	newClient func() (redis.UniversalClient, *tcpProxy), opts ...serverOption) *testCluster {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = redistest.DeletePrefix(ctx, rc, "rate:"+prefix)
	})
	dsn := pgtest.URL(t)
	kr := testKeyring(t)
	sessionKey, brokerKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	_, _ = rand.Read(brokerKey)
	tc := &testCluster{rc: rc, prefix: prefix}
	for range n {
		nrc, proxy := newClient()
		t.Cleanup(func() { nrc.Close() })
		db, err := store.OpenPostgres(context.Background(), dsn, store.WithKeyring(kr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		preg, err := presence.NewRedis(nrc, presence.RedisConfig{Prefix: prefix, Key: brokerKey, TTL: presenceTTL})
		if err != nil {
			t.Fatal(err)
		}
		reg := &killableRegistry{Registry: preg, dead: make(chan struct{})}
		node := func(c *Config, d *Deps) {
			c.GapCheck = time.Second
			rcfg := ephemeral.RedisConfig{Prefix: prefix}
			d.SessionKey = sessionKey
			d.Sessions = ephemeral.NewRedisSessionStore(nrc, rcfg)
			d.Limiter = ephemeral.NewRedisLimiter(nrc, rcfg)
			d.Rates = ephemeral.NewRedisRateLimiter(nrc, rcfg)
			d.Store = db
			d.Presence = reg
			d.NewBroker = func(h broker.Handler) (broker.Broker, error) {
				return broker.NewRedisBroker(nrc, broker.RedisConfig{Prefix: prefix, Key: brokerKey}, h)
			}
		}
		ts := authServer(t, append([]serverOption{node}, opts...)...)
		tc.nodes = append(tc.nodes, &clusterNode{testServer: ts, proxy: proxy, reg: reg})
	}
	return tc
}

// clusterUsers are the identities of the cluster tests: alice, bob and
// carol, each registered once.
func clusterUsers(t *testing.T, tc *testCluster) []*client.Identity {
	t.Helper()
	ids := []*client.Identity{identity(t, "alice", 0), identity(t, "bob", 1), carolIdentity(t)}
	for i, id := range ids {
		c := tc.nodes[i%len(tc.nodes)].dial(t)
		if _, err := c.Register(ctxT(t), id, id.User+" password"); err != nil {
			t.Fatalf("register %s: %v", id.User, err)
		}
		c.Close()
	}
	return ids
}

// authOn dials node and authenticates as id.
func authOn(t *testing.T, node *clusterNode, id *client.Identity, mod ...func(*client.Config)) *client.Conn {
	t.Helper()
	c := node.dial(t, append([]func(*client.Config){func(cfg *client.Config) { cfg.Incoming = 4096 }}, mod...)...)
	if _, err := c.Auth(ctxT(t), id); err != nil {
		t.Fatalf("auth %s: %v", id.User, err)
	}
	return c
}

// collector gathers the room messages pushed to a connection.
type collector struct {
	mu   sync.Mutex
	msgs []*protocol.Message
	more chan struct{}
}

// collect reads c's pushes until it ends.
func collect(c *client.Conn, room string) *collector {
	col := &collector{more: make(chan struct{}, 1)}
	go func() {
		for m := range c.Messages() {
			if m.Type == protocol.MsgMessage && m.Room == room {
				col.mu.Lock()
				col.msgs = append(col.msgs, m)
				col.mu.Unlock()
				select {
				case col.more <- struct{}{}:
				default:
				}
			}
		}
	}()
	return col
}

// lastSeq is the seq of the last message collected, 0 if none.
func (col *collector) lastSeq() int64 {
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.msgs) == 0 {
		return 0
	}
	return col.msgs[len(col.msgs)-1].Seq
}

// wait waits until at least n messages are collected and returns them.
func (col *collector) wait(t *testing.T, what string, n int) []*protocol.Message {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		col.mu.Lock()
		got := slices.Clone(col.msgs)
		col.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-col.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: %d messages, want %d; last seq %d", what, len(got), n, col.lastSeq())
		}
	}
}

// wantExactlyOnce fails unless msgs are the room's messages 1..n, each
// once, in seq order, and each sender's in the order it sent them
// (bodies "<sender>/<i>").
func wantExactlyOnce(t *testing.T, what string, msgs []*protocol.Message, n int) {
	t.Helper()
	if len(msgs) != n {
		// Say which: a message twice (the same seq, or the same body
		// under two seqs) or one missing.
		var list []string
		for _, m := range msgs {
			list = append(list, fmt.Sprintf("%d:%s", m.Seq, m.Body))
		}
		t.Fatalf("%s: %d messages, want %d: %s", what, len(msgs), n, strings.Join(list, " "))
	}
	next := map[string]int{}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("%s: message %d has seq %d (body %q)", what, i, m.Seq, m.Body)
		}
		var sender string
		var k int
		if _, err := fmt.Sscanf(strings.Replace(m.Body, "/", " ", 1), "%s %d", &sender, &k); err != nil {
			t.Fatalf("%s: body %q", what, m.Body)
		}
		if k != next[sender] {
			t.Fatalf("%s: %s's message %d arrived where %d was due", what, sender, k, next[sender])
		}
		next[sender]++
	}
}

// retryable reports an error that docs/protocol.md says to retry: a
// backend unavailable.
func retryable(err error) bool { return protocol.CodeOf(err) == protocol.CodeUnavailable }

// sendAll sends count messages "<tag>/<i>" from c to room, retrying a
// retryable refusal with the same message id; it returns the first
// error that is not retryable.
func sendAll(ctx context.Context, c *client.Conn, room, tag string, count int) error {
	for i := range count {
		mid := client.NewMessageID()
		for {
			_, err := c.SendMessage(ctx, room, fmt.Sprintf("%s/%d", tag, i), mid)
			if err == nil {
				break
			}
			if !retryable(err) || ctx.Err() != nil {
				return fmt.Errorf("send %s/%d: %w", tag, i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// TestClusterRooms: six connections of three users spread over three
// nodes join one room (each join lists the members of every node) and
// send at once; every member receives every message exactly once, in seq
// and per-sender order. Across nodes, an end-to-end conversation works
// too.
func TestClusterRooms(t *testing.T) {
	testClusterRooms(t, newTestCluster(t, 3, withoutRateLimits))
}

// TestClusterRoomsOnRedisCluster is TestClusterRooms on a 3-shard Redis
// Cluster: room traffic goes over sharded Pub/Sub, and sessions, limits
// and presence live on the shards their keys hash to.
func TestClusterRoomsOnRedisCluster(t *testing.T) {
	tc := newTestShardedCluster(t, 3, withoutRateLimits)
	testClusterRooms(t, tc)
	// The nodes' brokers used more than one shard: the room's channel and
	// the control channels every node subscribes to.
	var mu sync.Mutex
	shards := 0
	err := tc.rc.(*redis.ClusterClient).ForEachMaster(ctxT(t), func(ctx context.Context, c *redis.Client) error {
		chans, err := c.PubSubShardChannels(ctx, tc.prefix+"broker:*").Result()
		if len(chans) > 0 {
			mu.Lock()
			shards++
			mu.Unlock()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if shards < 2 {
		t.Fatalf("the nodes' sharded channels are on %d shard(s), want several", shards)
	}
}

func testClusterRooms(t *testing.T, tc *testCluster) {
	ids := clusterUsers(t, tc)
	var conns []*client.Conn
	for i := range 6 {
		c := authOn(t, tc.nodes[i%3], ids[i%3])
		j, err := c.JoinAfter(ctxT(t), "r", "", nil)
		if err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
		if j.Count != i+1 || len(j.Members) != i+1 {
			t.Fatalf("join %d lists %v, count %d; want %d members across the nodes", i, j.Members, j.Count, i+1)
		}
		conns = append(conns, c)
	}
	cols := make([]*collector, len(conns))
	for i, c := range conns {
		cols[i] = collect(c, "r")
	}
	const each = 15
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendAll(context.Background(), c, "r", fmt.Sprintf("c%d", i), each); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, col := range cols {
		wantExactlyOnce(t, fmt.Sprintf("connection %d on node %d", i, i%3), col.wait(t, "room", each*len(conns)), each*len(conns))
	}

	// End to end: alice on node 0, bob on node 2.
	ca, cb := authOn(t, tc.nodes[0], ids[0]), authOn(t, tc.nodes[2], ids[1])
	cva, cvb := openConv(t, ca, ids[0], "bob"), openConv(t, cb, ids[1], "alice")
	for i := range 3 {
		if _, _, err := cva.SendText(ctxT(t), fmt.Sprintf("e2e %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if got := receive(t, cb, cvb); got.Text != fmt.Sprintf("e2e %d", i) || got.From != "alice" {
			t.Fatalf("bob on node 2 got %+v", got)
		}
	}
}

// TestClusterSessionsAndThrottle: a session made on node 0 resumes on
// node 1; a request carried out on node 0, replayed to node 1 as the
// record it was sent in, ends that connection unread (records are bound
// to their connection's keys), and sent again as a new request with the
// same message id it is the same message, not a second one; login
// failures count on every node together.
func TestClusterSessionsAndThrottle(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config, _ *Deps) { c.LoginFailuresPerUser = 3 })
	ids := clusterUsers(t, tc)
	c0 := authOn(t, tc.nodes[0], ids[0])
	if _, err := c0.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	req := &protocol.Message{Type: protocol.MsgSend, ID: client.NewMessageID(), TS: time.Now().UnixMilli(), Room: "r", Body: "once"}
	record := mustSeal(t, c0, encode(t, req))
	if err := c0.WriteRaw(record); err != nil {
		t.Fatal(err)
	}
	ack := next(t, c0, protocol.MsgAck)
	if ack.Ref != req.ID || ack.Seq != 1 {
		t.Fatalf("ack %+v", ack)
	}
	ticket := c0.Ticket()
	c0.Close()
	resume := func(cfg *client.Config) { cfg.Resume = &ticket }
	c1 := tc.nodes[1].dial(t, resume)
	if !c1.Session().Resumed || c1.Session().User != "alice" {
		t.Fatalf("on node 1: %+v, want alice's session resumed", c1.Session())
	}
	if err := c1.WriteRaw(record); err != nil {
		t.Fatal(err)
	}
	if code := protocol.CodeOf(waitEnd(t, c1)); code != protocol.CodeBadRecord && code != protocol.CodeBadSequence {
		t.Fatalf("replayed record on node 1 ended the connection with %v", code)
	}
	c2 := tc.nodes[1].dial(t, resume)
	if _, err := c2.Join(ctxT(t), "r", ""); err != nil {
		t.Fatal(err)
	}
	again, err := c2.SendMessage(ctxT(t), "r", "once", req.ID)
	if err != nil || again.Seq != 1 {
		t.Fatalf("the same message id again on node 1: %+v, %v; want the first send's seq 1", again, err)
	}
	if pos, err := tc.nodes[2].store.StreamHead(ctxT(t), store.RoomStream("r")); err != nil || pos.Seq != 1 {
		t.Fatalf("head %+v, %v: want one message stored", pos, err)
	}

	for i := range 3 {
		_, err := tc.nodes[i].dial(t).Login(ctxT(t), ids[1], "wrong password", false)
		wantCode(t, err, protocol.CodeAuthFailed)
	}
	_, err = tc.nodes[0].dial(t).Login(ctxT(t), ids[1], "bob password", false)
	wantCode(t, err, protocol.CodeRateLimited)
}

// generousLimits keeps the rate limits on, in Redis, but far above what
// the tests send: every logged-in request then needs Redis.
func generousLimits(c *Config, _ *Deps) {
	many := ephemeral.PerSecond(10000, 10000)
	c.Limits.UserRequestRate, c.Limits.SendRate, c.Limits.RoomSendRate = many, many, many
}

// TestClusterRedisOutage: first node 2 alone loses Redis while the others
// go on (its broker misses their traffic, and its own requests are
// refused with a retryable code); then every node loses it (every request
// that needs the replay check is refused, retryably); after each, Redis
// comes back and everything recovers by itself: node 2 fills the gap
// from the store, and every member has every message exactly once, in
// order.
func TestClusterRedisOutage(t *testing.T) {
	tc := newTestCluster(t, 3, generousLimits)
	ids := clusterUsers(t, tc)
	var conns []*client.Conn
	var cols []*collector
	for i := range 3 {
		c := authOn(t, tc.nodes[i], ids[i])
		if _, err := c.JoinAfter(ctxT(t), "r", "", nil); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		cols = append(cols, collect(c, "r"))
	}
	sent := 0
	send := func(i, n int) {
		t.Helper()
		if err := sendAll(ctxT(t), conns[i], "r", fmt.Sprintf("c%d", i), n); err != nil {
			t.Fatal(err)
		}
	}
	var c0sent, c2sent int
	send(0, 5)
	c0sent, sent = 5, 5

	// Node 2 alone loses Redis.
	tc.nodes[2].proxy.cut()
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("node 2 kept carrying out sends without Redis")
		}
		_, err := conns[2].SendMessage(ctxT(t), "r", fmt.Sprintf("c2/%d", c2sent), "")
		if err == nil {
			// Sent before the cut took effect.
			c2sent++
			sent++
			continue
		}
		wantCode(t, err, protocol.CodeUnavailable)
		break
	}
	for i := range 10 {
		if _, err := conns[0].SendMessage(ctxT(t), "r", fmt.Sprintf("c0/%d", c0sent+i), ""); err != nil {
			t.Fatal(err)
		}
	}
	c0sent += 10
	sent += 10
	// Nodes 0 and 1 deliver at once; node 2 only once it is back.
	cols[1].wait(t, "node 1 during node 2's outage", sent)
	tc.nodes[2].proxy.restore()
	wantExactlyOnce(t, "node 2 after its outage", cols[2].wait(t, "node 2 after its outage", sent), sent)

	// Every node loses Redis: nothing that needs the replay check is
	// carried out, and what is refused says to retry.
	for _, n := range tc.nodes {
		n.proxy.cut()
	}
	for i, c := range conns {
		_, err := c.SendMessage(ctxT(t), "r", fmt.Sprintf("c%d/x", i), "")
		wantCode(t, err, protocol.CodeUnavailable)
	}
	for _, n := range tc.nodes {
		n.proxy.restore()
	}
	// Recovered: the next sends go through (sendAll retries while the
	// nodes reconnect), and every member has everything once.
	var wg sync.WaitGroup
	for i, c := range conns {
		start := map[int]int{0: c0sent, 2: c2sent}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 5 {
				mid := client.NewMessageID()
				for {
					_, err := c.SendMessage(context.Background(), "r", fmt.Sprintf("c%d/%d", i, start+k), mid)
					if err == nil {
						break
					}
					if !retryable(err) {
						t.Errorf("send after the outage: %v", err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	sent += 15
	for i, col := range cols {
		wantExactlyOnce(t, fmt.Sprintf("node %d after the outage", i), col.wait(t, "after the outage", sent), sent)
	}
}

// TestClusterNodeKilled: node 2 dies in the middle of traffic; its member
// reconnects to node 1, resumes its session and rejoins after the last
// message it had: no message is lost or repeated, and node 2's presence
// entries expire.
func TestClusterNodeKilled(t *testing.T) {
	tc := newTestCluster(t, 3, withoutRateLimits)
	ids := clusterUsers(t, tc)
	alice := authOn(t, tc.nodes[0], ids[0])
	bob := authOn(t, tc.nodes[2], ids[1])
	carol := authOn(t, tc.nodes[1], ids[2])
	for _, c := range []*client.Conn{alice, bob, carol} {
		if _, err := c.JoinAfter(ctxT(t), "r", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	colBob, colCarol := collect(bob, "r"), collect(carol, "r")
	const total = 60
	sendErr := make(chan error, 1)
	go func() { sendErr <- sendAll(context.Background(), alice, "r", "alice", total) }()
	colBob.wait(t, "bob before the kill", 10)
	tc.nodes[2].kill()
	select {
	case <-bob.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bob's connection outlived its node")
	}
	before := colBob.wait(t, "bob before the kill", 0)
	ticket := bob.Ticket()
	bob2 := tc.nodes[1].dial(t, func(cfg *client.Config) { cfg.Resume = &ticket; cfg.Incoming = 4096 })
	if !bob2.Session().Resumed || bob2.Session().User != "bob" {
		t.Fatalf("bob on node 1: %+v", bob2.Session())
	}
	colBob2 := collect(bob2, "r")
	last := colBob.lastSeq()
	if _, err := bob2.JoinAfter(ctxT(t), "r", "", &last); err != nil {
		t.Fatal(err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	after := colBob2.wait(t, "bob after the kill", total-len(before))
	wantExactlyOnce(t, "bob across the kill", append(before, after...), total)
	wantExactlyOnce(t, "carol", colCarol.wait(t, "carol", total), total)

	// Node 2's entry for bob's old connection expires: alice, carol and
	// bob's new connection remain.
	reg, err := presence.NewRedis(tc.rc, presence.RedisConfig{Prefix: tc.prefix, Key: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10*presenceTTL + 20*time.Second)
	for {
		_, n, err := reg.List(ctxT(t), "r", 0)
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d members listed, want 3 once node 2's entries expired", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
