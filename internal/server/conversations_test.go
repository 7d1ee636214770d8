package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/internal/broker"
	"github.com/secure-messenger/messenger/internal/ephemeral"
	"github.com/secure-messenger/messenger/internal/redistest"
	"github.com/secure-messenger/messenger/internal/store"
	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

var (
	carolOnce sync.Once
	carolKeys [2]*rsa.PrivateKey
)

// carolIdentity is a third user's device, with keys of its own (the
// shared identity slots are taken by alice and bob's two devices).
func carolIdentity(t *testing.T) *client.Identity {
	t.Helper()
	carolOnce.Do(func() {
		for i := range carolKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			carolKeys[i] = k
		}
	})
	return &client.Identity{User: "carol", Device: testDeviceID("carol", 0), Signing: carolKeys[0], Encryption: carolKeys[1]}
}

// convUsers registers alice, bob (two devices) and carol, each connected.
type convUsers struct {
	alice, bob1, bob2, carol *client.Identity
	ca, cb1, cb2, cc         *client.Conn
}

func registerConvUsers(t *testing.T, ts *testServer) *convUsers {
	t.Helper()
	u := &convUsers{alice: identity(t, "alice", 0), bob1: identity(t, "bob", 1), bob2: identity(t, "bob", 2), carol: carolIdentity(t)}
	u.ca, u.cb1, u.cb2, u.cc = ts.dial(t), ts.dial(t), ts.dial(t), ts.dial(t)
	for _, x := range []struct {
		c  *client.Conn
		id *client.Identity
	}{{u.ca, u.alice}, {u.cb1, u.bob1}, {u.cc, u.carol}} {
		if _, err := x.c.Register(ctxT(t), x.id, x.id.User+" password"); err != nil {
			t.Fatalf("register %s: %v", x.id.User, err)
		}
	}
	if _, err := u.cb2.Login(ctxT(t), u.bob2, "bob password", true); err != nil {
		t.Fatal(err)
	}
	return u
}

// receive waits for the next conversation record pushed to c and opens
// it with cv, handling key events on the way.
func receive(t *testing.T, c *client.Conn, cv *client.Conversation) *client.Received {
	t.Helper()
	for {
		m := next(t, c, protocol.MsgConvMsg)
		got, err := cv.Receive(ctxT(t), m)
		if err != nil {
			t.Fatalf("receive seq %d: %v", m.Seq, err)
		}
		if got != nil {
			return got
		}
	}
}

func openConv(t *testing.T, c *client.Conn, id *client.Identity, peer string) *client.Conversation {
	t.Helper()
	cv, err := c.OpenConversation(ctxT(t), id, peer, client.ConversationOptions{})
	if err != nil {
		t.Fatalf("%s opens the conversation with %s: %v", id.User, peer, err)
	}
	return cv
}

// TestConversationBothWays: alice and bob (two devices) open one
// conversation; what alice sends both of bob's devices read, what bob
// sends alice and bob's other device read, each verified, with the seq
// of the ack; a retry of the same record is the same message.
func TestConversationBothWays(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	cvb1 := openConv(t, u.cb1, u.bob1, "alice")
	cvb2 := openConv(t, u.cb2, u.bob2, "alice")
	if cva.ID() != cvb1.ID() || cva.ID() != cvb2.ID() {
		t.Fatalf("conversation ids %s %s %s differ", cva.ID(), cvb1.ID(), cvb2.ID())
	}

	sealed, sent, err := cva.SendText(ctxT(t), "hello bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		c  *client.Conn
		cv *client.Conversation
	}{{u.cb1, cvb1}, {u.cb2, cvb2}} {
		got := receive(t, x.c, x.cv)
		if got.Text != "hello bob" || got.From != "alice" || got.Device != u.alice.Device || got.Seq != sent.Seq || !got.Verified {
			t.Fatalf("bob got %+v, want alice's hello at seq %d", got, sent.Seq)
		}
	}
	again, err := cva.Send(ctxT(t), sealed)
	if err != nil || again.Seq != sent.Seq {
		t.Fatalf("retry: seq %d, %v; want %d", again.Seq, err, sent.Seq)
	}

	_, sent, err = cvb2.SendText(ctxT(t), "hi alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		c  *client.Conn
		cv *client.Conversation
	}{{u.ca, cva}, {u.cb1, cvb1}} {
		got := receive(t, x.c, x.cv)
		if got.Text != "hi alice" || got.From != "bob" || got.Device != u.bob2.Device || got.Seq != sent.Seq || !got.Verified {
			t.Fatalf("got %+v, want bob's hi at seq %d", got, sent.Seq)
		}
	}

	convs, err := u.cb1.Conversations(ctxT(t))
	if err != nil || len(convs) != 1 || convs[0].Conv != cva.ID().String() || convs[0].User != "alice" || convs[0].Head != sent.Seq || convs[0].Version < 1 {
		t.Fatalf("bob's conversations: %+v, %v", convs, err)
	}
}

// TestConversationOffline: bob is offline while alice sends 20 records;
// when he connects again he gets all of them from history after his read
// position, in order, exactly once, and then nothing more.
func TestConversationOffline(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	if _, err := cvb.Missed(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	u.cb1.Close()
	u.cb2.Close()
	want := make([]string, 20)
	for i := range want {
		want[i] = "offline message " + string(rune('a'+i))
		if _, _, err := cva.SendText(ctxT(t), want[i]); err != nil {
			t.Fatal(err)
		}
	}

	cb := ts.dial(t)
	if _, err := cb.Auth(ctxT(t), u.bob1); err != nil {
		t.Fatal(err)
	}
	cvb = openConv(t, cb, u.bob1, "alice")
	got, err := cvb.Missed(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("bob got %d records, want %d", len(got), len(want))
	}
	for i, g := range got {
		if g.Text != want[i] || g.From != "alice" || i > 0 && g.Seq <= got[i-1].Seq {
			t.Fatalf("record %d: %+v, want %q in order", i, g, want[i])
		}
	}
	more, err := cvb.Missed(ctxT(t))
	if err != nil || len(more) != 0 {
		t.Fatalf("second catch-up: %d records, %v", len(more), err)
	}
	convs, err := cb.Conversations(ctxT(t))
	if err != nil || len(convs) != 1 || convs[0].Read != convs[0].Head {
		t.Fatalf("after catching up: %+v, %v", convs, err)
	}
}

// TestConversationOutsider: carol cannot open, fetch, page, read or send
// into alice and bob's conversation: not_found, as for one that does not
// exist. Her own conversation with bob is another one.
func TestConversationOutsider(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	sealed, _, err := cva.SendText(ctxT(t), "not for carol")
	if err != nil {
		t.Fatal(err)
	}
	conv := cva.ID().String()
	zero := int64(0)
	for _, conv := range []string{conv, uuid.NewString()} {
		for _, m := range []*protocol.Message{
			{Type: protocol.MsgConvKeys, Conv: conv},
			{Type: protocol.MsgConvHistory, Conv: conv, After: &zero},
			{Type: protocol.MsgConvSend, Conv: conv, Record: sealed.Record},
			{Type: protocol.MsgRead, Conv: conv, Seq: 1},
			{Type: protocol.MsgConvPutKey, Conv: conv, Version: 2, Envelope: []byte{1}},
		} {
			_, err := u.cc.Request(ctxT(t), m)
			wantCode(t, err, protocol.CodeNotFound)
		}
	}
	cvc := openConv(t, u.cc, u.carol, "bob")
	if cvc.ID() == cva.ID() {
		t.Fatal("carol opened alice and bob's conversation")
	}
	convs, err := u.cc.Conversations(ctxT(t))
	if err != nil || len(convs) != 1 || convs[0].User != "bob" {
		t.Fatalf("carol's conversations: %+v, %v", convs, err)
	}
	_, err = u.cc.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvOpen, User: "nobody"})
	wantCode(t, err, protocol.CodeNotFound)
	_, err = u.cc.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvOpen, User: "carol"})
	wantCode(t, err, protocol.CodeBadRequest)
}

// TestConversationMisaddressed: the server refuses a record whose header
// names another conversation, another sender or another recipient, one
// under a key version the conversation lacks, and bytes that are no
// record; and a key envelope for another conversation or version, or made
// by another user.
func TestConversationMisaddressed(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	cvac := openConv(t, u.ca, u.alice, "carol")
	fromAlice, err := cva.Seal(ctxT(t), "to bob")
	if err != nil {
		t.Fatal(err)
	}
	fromBob, err := cvb.Seal(ctxT(t), "to alice")
	if err != nil {
		t.Fatal(err)
	}
	toCarol, err := cvac.Seal(ctxT(t), "to carol")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e2e.ParseRecord(fromAlice.Record)
	if err != nil {
		t.Fatal(err)
	}
	conv := cva.ID().String()
	for name, x := range map[string]struct {
		c      *client.Conn
		conv   string
		record []byte
	}{
		"another conversation's record": {u.ca, conv, toCarol.Record},
		"into another conversation":     {u.ca, cvac.ID().String(), fromAlice.Record},
		"bob's record sent by alice":    {u.ca, conv, fromBob.Record},
		"not a record":                  {u.ca, conv, []byte("hello bob in the clear")},
		"unknown key version":           {u.ca, conv, withKeyVersion(t, rec, 99)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := x.c.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvSend, Conv: x.conv, Record: x.record})
			wantCode(t, err, protocol.CodeBadRequest)
		})
	}
	// An envelope for this conversation stored by bob cannot be stored
	// by alice as hers, nor in another conversation or as another
	// version.
	keys, err := u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvKeys, Conv: conv})
	if err != nil || len(keys.Envelopes) == 0 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	var bobs *protocol.Message
	for _, e := range keys.Envelopes {
		if e.From == "bob" {
			bobs = e
		}
	}
	if bobs == nil {
		t.Fatal("bob made no key version")
	}
	head := keys.Envelopes[len(keys.Envelopes)-1].Version
	for name, m := range map[string]*protocol.Message{
		"made by bob":          {Conv: conv, Version: head + 1, Envelope: bobs.Envelope},
		"another conversation": {Conv: cvac.ID().String(), Version: head + 1, Envelope: bobs.Envelope},
		"not an envelope":      {Conv: conv, Version: head + 1, Envelope: []byte("key")},
	} {
		t.Run(name, func(t *testing.T) {
			m.Type = protocol.MsgConvPutKey
			_, err := u.ca.Request(ctxT(t), m)
			wantCode(t, err, protocol.CodeBadRequest)
		})
	}
	_, err = u.cb1.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvPutKey, Conv: conv, Version: bobs.Version, Envelope: bobs.Envelope})
	wantCode(t, err, protocol.CodeConflict)
}

// withKeyVersion re-encodes rec with another key version (its signature
// no longer verifies, which the server cannot tell).
func withKeyVersion(t *testing.T, rec *e2e.Record, v uint32) []byte {
	t.Helper()
	r := *rec
	r.KeyVersion = v
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConversationRotatesOnNewDevice: alice opened the conversation when
// bob had one device; bob adds a second; after alice looks again, her next
// send rotates to a key version wrapped to the new device too, which
// reads it; and what the new device sends alice sees as unverified until
// she accepts bob's devices.
func TestConversationRotatesOnNewDevice(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	alice, bob1, bob2 := identity(t, "alice", 0), identity(t, "bob", 1), identity(t, "bob", 2)
	ca, cb1, cb2 := ts.dial(t), ts.dial(t), ts.dial(t)
	if _, err := ca.Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb1.Register(ctxT(t), bob1, "bob password"); err != nil {
		t.Fatal(err)
	}
	cva := openConv(t, ca, alice, "bob")
	first := cva.KeyVersion()
	if _, err := cb2.Login(ctxT(t), bob2, "bob password", true); err != nil {
		t.Fatal(err)
	}
	cvb2 := openConv(t, cb2, bob2, "alice")
	if err := cva.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cva.SendText(ctxT(t), "welcome, new device"); err != nil {
		t.Fatal(err)
	}
	if cva.KeyVersion() <= first {
		t.Fatalf("key version %d after bob's new device, was %d", cva.KeyVersion(), first)
	}
	if got := receive(t, cb2, cvb2); got.Text != "welcome, new device" || !got.Verified {
		t.Fatalf("bob's new device got %+v", got)
	}
	if _, _, err := cvb2.SendText(ctxT(t), "from the new device"); err != nil {
		t.Fatal(err)
	}
	got := receive(t, ca, cva)
	if got.Text != "from the new device" || got.Verified {
		t.Fatalf("alice got %+v, want it unverified", got)
	}
	if err := cva.Accept("bob"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cvb2.SendText(ctxT(t), "again"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, ca, cva); got.Text != "again" || !got.Verified {
		t.Fatalf("after accepting: %+v", got)
	}
}

// TestConversationMarker: a phrase alice sends bob appears nowhere the
// server keeps or says — not in the database files (with the WAL), not in
// its debug log, not in anything a third user can fetch — in plain, hex or
// base64 form.
func TestConversationMarker(t *testing.T) {
	dir := t.TempDir()
	ts := authServer(t, withoutRateLimits, func(_ *Config, d *Deps) {
		db, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "messenger.db"), store.WithKeyring(testKeyring(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		d.Store = db
	})
	u := registerConvUsers(t, ts)
	marker := "marker " + uuid.NewString() + " purple elephant"
	cva := openConv(t, u.ca, u.alice, "bob")
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	if _, _, err := cva.SendText(ctxT(t), marker); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, u.cb1, cvb); got.Text != marker {
		t.Fatalf("bob got %q", got.Text)
	}

	// What carol can fetch.
	var seen bytes.Buffer
	zero := int64(0)
	for _, m := range []*protocol.Message{
		{Type: protocol.MsgLookup, User: "alice"},
		{Type: protocol.MsgLookup, User: "bob"},
		{Type: protocol.MsgConvOpen, User: "bob"},
		{Type: protocol.MsgConvs},
		{Type: protocol.MsgRooms},
		{Type: protocol.MsgConvKeys, Conv: cva.ID().String()},
		{Type: protocol.MsgConvHistory, Conv: cva.ID().String(), After: &zero},
	} {
		r, _ := u.cc.Request(ctxT(t), m)
		if r != nil {
			b, _ := r.Encode()
			seen.Write(b)
		}
	}
	// And whatever the server pushed to carol meanwhile.
	for drained := false; !drained; {
		select {
		case m := <-u.cc.Messages():
			b, _ := m.Encode()
			seen.Write(b)
		default:
			drained = true
		}
	}
	// bob's own history, to check that the search finds what is there:
	// the record, not the marker.
	h, err := u.cb1.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvHistory, Conv: cva.ID().String(), After: &zero})
	if err != nil || len(h.Msgs) == 0 {
		t.Fatalf("bob's history: %v", err)
	}

	search := func(what string, data []byte) {
		t.Helper()
		if f := markerIn(marker, data); f != nil {
			t.Errorf("%s holds the marker (as %q)", what, f)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "messenger.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		search(filepath.Base(f), data)
	}
	search("the server's log", []byte(ts.logs.String()))
	search("what carol fetched", seen.Bytes())
	b, _ := h.Encode()
	search("bob's history answer", b)
}

// markerForms are the forms a marker phrase is searched for in: plain,
// hex, and base64 (std and url alphabets) at each of the three
// alignments it can have inside a larger encoded blob (the characters
// that depend on the neighbouring bytes are cut off).
func markerForms(marker string) [][]byte {
	forms := [][]byte{[]byte(marker), []byte(hex.EncodeToString([]byte(marker)))}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for k := range 3 {
			e := enc.EncodeToString(append(make([]byte, k), marker...))
			forms = append(forms, []byte(e[4:len(e)-4]))
		}
	}
	return forms
}

// markerIn returns the form of marker that data holds, or nil.
func markerIn(marker string, data []byte) []byte {
	lower := bytes.ToLower(data)
	for _, f := range markerForms(marker) {
		if bytes.Contains(data, f) || bytes.Contains(lower, bytes.ToLower(f)) {
			return f
		}
	}
	return nil
}

// TestMarkerSearch: the search of TestConversationMarker finds the marker
// in each of its forms, in the middle of other bytes.
func TestMarkerSearch(t *testing.T) {
	marker := "marker " + uuid.NewString() + " purple elephant"
	for _, f := range markerForms(marker) {
		if markerIn(marker, append(append([]byte("x"), f...), 'y')) == nil {
			t.Fatalf("the search misses %q", f)
		}
	}
	for i := range 3 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			b64 := enc.EncodeToString(append(append(make([]byte, i), marker...), 0xff, 0xfe))
			if markerIn(marker, []byte(b64)) == nil {
				t.Fatalf("the search misses base64 of the marker at offset %d", i)
			}
		}
	}
	if markerIn(marker, []byte("nothing here")) != nil {
		t.Fatal("the search finds the marker where it is not")
	}
}

// TestConversationLimits: the protocol's bound on a record carries the
// largest record pkg/e2e makes.
func TestConversationLimits(t *testing.T) {
	if protocol.MaxConvRecord < e2e.MaxRecordSize {
		t.Fatalf("MaxConvRecord %d < e2e.MaxRecordSize %d", protocol.MaxConvRecord, e2e.MaxRecordSize)
	}
}

// TestConversationAcrossNodes: alice on node A, bob on node B (one
// database, Redis for sessions, limits and the broker): bob's connection
// receives alice's record through ctl:conv, and nothing in Redis, key or
// value, holds the marker phrase she sent.
func TestConversationAcrossNodes(t *testing.T) {
	rc, prefix := redistest.Client(t)
	sessionKey, brokerKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	_, _ = rand.Read(brokerKey)
	behindRedis := func(c *Config, d *Deps) {
		withoutRateLimits(c, d)
		rcfg := ephemeral.RedisConfig{Prefix: prefix}
		d.SessionKey = sessionKey
		d.Sessions = ephemeral.NewRedisSessionStore(rc, rcfg)
		d.Limiter = ephemeral.NewRedisLimiter(rc, rcfg)
		d.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return broker.NewRedisBroker(rc, broker.RedisConfig{Prefix: prefix, Key: brokerKey}, h)
		}
	}
	nodeA := authServer(t, behindRedis)
	nodeB := authServer(t, behindRedis, func(_ *Config, d *Deps) { d.Store = nodeA.store })
	alice, bob := identity(t, "alice", 0), identity(t, "bob", 1)
	ca, cb := nodeA.dial(t), nodeB.dial(t)
	if _, err := ca.Register(ctxT(t), alice, "alice password"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Register(ctxT(t), bob, "bob password"); err != nil {
		t.Fatal(err)
	}
	cva := openConv(t, ca, alice, "bob")
	cvb := openConv(t, cb, bob, "alice")
	marker := "marker " + uuid.NewString() + " across nodes"
	if _, _, err := cva.SendText(ctxT(t), marker); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, cb, cvb); got.Text != marker || got.From != "alice" {
		t.Fatalf("bob on node B got %+v", got)
	}

	ctx := ctxT(t)
	var n int
	iter := rc.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		if f := markerIn(marker, []byte(key)); f != nil {
			t.Errorf("redis key %q holds the marker", key)
		}
		var vals []string
		switch typ, _ := rc.Type(ctx, key).Result(); typ {
		case "string":
			v, _ := rc.Get(ctx, key).Result()
			vals = []string{v}
		case "hash":
			m, _ := rc.HGetAll(ctx, key).Result()
			for k, v := range m {
				vals = append(vals, k, v)
			}
		case "list":
			vals, _ = rc.LRange(ctx, key, 0, -1).Result()
		case "set":
			vals, _ = rc.SMembers(ctx, key).Result()
		case "zset":
			vals, _ = rc.ZRange(ctx, key, 0, -1).Result()
		case "stream":
			xs, _ := rc.XRange(ctx, key, "-", "+").Result()
			for _, x := range xs {
				for k, v := range x.Values {
					vals = append(vals, k, fmt.Sprint(v))
				}
			}
		default:
			t.Errorf("redis key %q of type %q not searched", key, typ)
		}
		for _, v := range vals {
			if f := markerIn(marker, []byte(v)); f != nil {
				t.Errorf("redis key %q holds the marker (as %q)", key, f)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no redis keys under the test's prefix: nothing was searched")
	}
	search := func(what string, data []byte) {
		t.Helper()
		if f := markerIn(marker, data); f != nil {
			t.Errorf("%s holds the marker (as %q)", what, f)
		}
	}
	search("node A's log", []byte(nodeA.logs.String()))
	search("node B's log", []byte(nodeB.logs.String()))
}

// TestConversationSendRate: conv_send counts against the sender's send
// rate, as a room send does: past the burst, rate_limited, and nothing is
// stored.
func TestConversationSendRate(t *testing.T) {
	// Opening takes one send of the burst (conv_open) and alice's key
	// version another; three records fit, the fourth does not.
	ts := authServer(t, withoutRateLimits, func(c *Config, _ *Deps) {
		c.Limits.SendRate = ephemeral.Rate{Limit: 1, Per: time.Hour, Burst: 5}
	})
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, _, err = cva.SendText(ctxT(t), "again")
	}
	wantCode(t, err, protocol.CodeRateLimited)
	zero := int64(0)
	h, err := u.ca.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvHistory, Conv: cva.ID().String(), After: &zero})
	if err != nil || len(h.Msgs) != 3 {
		t.Fatalf("history after the limit: %d records, %v; want 3", len(h.Msgs), err)
	}
}

// TestConversationHistoryFitsARecord: a page of large records is cut to
// fit one record, with more set, keeping the oldest of an after page.
func TestConversationHistoryFitsARecord(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cva := openConv(t, u.ca, u.alice, "bob")
	big := strings.Repeat("x", e2e.MaxPlaintext)
	var seqs []int64
	for range 5 {
		_, sent, err := cva.SendText(ctxT(t), big)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, sent.Seq)
	}
	zero := int64(0)
	h, err := u.cb1.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvHistory, Conv: cva.ID().String(), After: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Msgs) == 0 || len(h.Msgs) >= len(seqs) || !h.More || h.Msgs[0].Seq != seqs[0] || h.Head != seqs[len(seqs)-1] {
		t.Fatalf("page of %d records, more %v, head %d; want the oldest, cut, more", len(h.Msgs), h.More, h.Head)
	}
}
