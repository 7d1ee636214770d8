package server

import (
	"errors"
	"testing"

	"github.com/secure-messenger/messenger/pkg/client"
	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestConversationPeekHistory: records a device accepted live come back
// from Conversation.History opened (context, not replays), both sides'
// records; Receive still refuses them as replays. Peek of another
// conversation's event, or of a record with a flipped byte, is an error.
func TestConversationPeekHistory(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	cva := openConv(t, u.ca, u.alice, "bob")
	for _, text := range []string{"one", "two"} {
		if _, _, err := cva.SendText(ctxT(t), text); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"one", "two"} {
		if got := receive(t, u.cb1, cvb); got.Text != want {
			t.Fatalf("live: %q, want %q", got.Text, want)
		}
	}
	if _, _, err := cvb.SendText(ctxT(t), "three"); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	for name, cv := range map[string]*client.Conversation{"alice": cva, "bob": cvb} {
		recs, more, err := cv.History(ctxT(t), client.HistoryQuery{After: &zero})
		if err != nil || more || len(recs) != 3 {
			t.Fatalf("%s: %d records, more %v, %v", name, len(recs), more, err)
		}
		for i, want := range []struct{ text, from string }{{"one", "alice"}, {"two", "alice"}, {"three", "bob"}} {
			if recs[i].Text != want.text || recs[i].From != want.from || recs[i].Seq != int64(i+1) {
				t.Fatalf("%s: record %d is %+v, want %v", name, i, recs[i], want)
			}
		}
	}
	r, err := u.cb1.Request(ctxT(t), &protocol.Message{Type: protocol.MsgConvHistory, Conv: cvb.ID().String(), After: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cvb.Receive(ctxT(t), r.Msgs[0]); got != nil || err != nil {
		t.Fatalf("Receive of a record accepted before: %+v, %v (want nil, nil: a replay)", got, err)
	}
	if _, err := cvb.Peek(ctxT(t), &protocol.Message{Type: protocol.MsgConvKey, Conv: cvb.ID().String()}); !errors.Is(err, client.ErrOtherConversation) {
		t.Fatalf("Peek of a conv_key: %v", err)
	}
	bad := *r.Msgs[0]
	bad.Record = append([]byte(nil), bad.Record...)
	bad.Record[len(bad.Record)-1] ^= 1
	if _, err := cvb.Peek(ctxT(t), &bad); err == nil || !errors.Is(err, e2e.ErrBadSignature) && !errors.Is(err, e2e.ErrMalformed) {
		t.Fatalf("Peek of a flipped record: %v", err)
	}
}

// TestConversationCounterFileComplete: once a device's counter file
// exists, it goes on under a key version the other user made (from
// counter 1) instead of rotating, and the other user opens the record.
func TestConversationCounterFileComplete(t *testing.T) {
	ts := authServer(t, withoutRateLimits)
	u := registerConvUsers(t, ts)
	cvb := openConv(t, u.cb1, u.bob1, "alice")
	cva, err := u.ca.OpenConversation(ctxT(t), u.alice, "bob", client.ConversationOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cva.SendText(ctxT(t), "one"); err != nil {
		t.Fatal(err)
	}
	receive(t, u.cb1, cvb)
	// Bob has no counter for alice's key version: he makes the next.
	if _, _, err := cvb.SendText(ctxT(t), "two"); err != nil {
		t.Fatal(err)
	}
	v := cvb.KeyVersion()
	if got := receive(t, u.ca, cva); got.Text != "two" || got.KeyVersion != v {
		t.Fatalf("alice got %+v", got)
	}
	if _, _, err := cva.SendText(ctxT(t), "three"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, u.cb1, cvb); got.Text != "three" || got.KeyVersion != v {
		t.Fatalf("bob got %q under key version %d, want %d (no rotation)", got.Text, got.KeyVersion, v)
	}
}
