package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Peek opens a conv_msg of this conversation, pushed or from a history
// page, without the replay guard: for showing records seen before (or
// giving them to a model as context), never for deciding that a record
// is new. It neither accepts nor refuses the record as a replay; every
// other check of e2e.md §5.5 applies, as in Receive. Use Receive for new
// records.
func (cv *Conversation) Peek(ctx context.Context, m *protocol.Message) (*Received, error) {
	if m.Type != protocol.MsgConvMsg || m.Conv != cv.id.String() {
		return nil, ErrOtherConversation
	}
	return cv.open(ctx, m, nil)
}

// History fetches one page of the conversation's stored records
// (conv_history, docs/protocol.md §8.5) and opens them with Peek, oldest
// first. A record that fails to open is left out and its error joined
// into the returned error; the others are still returned. more says
// there may be more beyond the page. Positions are those of
// HistoryQuery.
func (cv *Conversation) History(ctx context.Context, q HistoryQuery) (got []*Received, more bool, err error) {
	r, err := cv.conn.Request(ctx, &protocol.Message{Type: protocol.MsgConvHistory, Conv: cv.id.String(), After: q.After, Before: q.Before, Limit: q.Limit})
	if err != nil {
		return nil, false, err
	}
	var errs []error
	for _, m := range r.Msgs {
		rec, err := cv.Peek(ctx, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("seq %d: %w", m.Seq, err))
			continue
		}
		got = append(got, rec)
	}
	return got, r.More, errors.Join(errs...)
}
