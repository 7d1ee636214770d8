package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestRetryable: what each failure means for a retry.
func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrClosed, true},
		{fmt.Errorf("client: write: %w: %w", ErrClosed, errors.New("broken pipe")), true},
		{&protocol.PeerError{Code: protocol.CodeGoingAway, Sealed: true}, true},
		{fmt.Errorf("%w: %w", ErrClosed, &protocol.PeerError{Code: protocol.CodeGoingAway}), true},
		{&protocol.PeerError{Code: protocol.CodeUnavailable}, true},
		{&protocol.PeerError{Code: protocol.CodeInternal}, true},
		{&protocol.PeerError{Code: protocol.CodeRateLimited}, false},
		{&protocol.PeerError{Code: protocol.CodeSlowConsumer}, false},
		{fmt.Errorf("%w: %w", ErrClosed, &protocol.PeerError{Code: protocol.CodeSlowConsumer}), false},
		{&protocol.PeerError{Code: protocol.CodeSessionRevoked}, false},
		{&protocol.PeerError{Code: protocol.CodeBadRecord}, false},
		{context.DeadlineExceeded, false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
