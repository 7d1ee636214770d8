package protocol_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestCodeNumbers pins every code's number, name and fatality: they are
// part of the wire protocol and may never be renumbered.
func TestCodeNumbers(t *testing.T) {
	cases := []struct {
		code  protocol.Code
		num   uint16
		name  string
		fatal bool
	}{
		{protocol.CodeUnexpectedMessage, 1, "unexpected_message", true},
		{protocol.CodeMalformed, 2, "malformed", true},
		{protocol.CodeUnsupportedVersion, 3, "unsupported_version", true},
		{protocol.CodeNoCommonSuite, 4, "no_common_suite", true},
		{protocol.CodeBadSignature, 5, "bad_signature", true},
		{protocol.CodeBadFinished, 6, "bad_finished", true},
		{protocol.CodeHandshakeTimeout, 7, "handshake_timeout", true},
		{protocol.CodeFrameTooLarge, 8, "frame_too_large", true},
		{protocol.CodeBadRecord, 9, "bad_record", true},
		{protocol.CodeBadSequence, 10, "bad_sequence", true},
		{protocol.CodeSessionUnknown, 11, "session_unknown", true},
		{protocol.CodeReplayedID, 12, "replayed_id", false},
		{protocol.CodeStaleTimestamp, 13, "stale_timestamp", false},
		{protocol.CodeSlowConsumer, 14, "slow_consumer", true},
		{protocol.CodeInternal, 15, "internal", true},
		{protocol.CodeBadKey, 16, "bad_key", true},
		{protocol.CodeBadRequest, 17, "bad_request", false},
		{protocol.CodeTooLarge, 18, "too_large", false},
		{protocol.CodeUnavailable, 19, "unavailable", false},
		{protocol.CodeGoingAway, 20, "going_away", true},
		{protocol.CodeSessionEnded, 21, "session_ended", true},
		{protocol.CodeAuthFailed, 22, "auth_failed", false},
		{protocol.CodeRateLimited, 23, "rate_limited", false},
		{protocol.CodeConflict, 24, "conflict", false},
		{protocol.CodeUnauthenticated, 25, "unauthenticated", false},
		{protocol.CodeNotFound, 26, "not_found", false},
		{protocol.CodeSessionRevoked, 27, "session_revoked", true},
		{protocol.CodeLimitReached, 28, "limit_reached", false},
	}
	for _, c := range cases {
		if uint16(c.code) != c.num || c.code.String() != c.name || c.code.Fatal() != c.fatal {
			t.Errorf("code %d %s fatal=%v, want %d %s fatal=%v", uint16(c.code), c.code, c.code.Fatal(), c.num, c.name, c.fatal)
		}
		if c.code.Error() != "protocol: "+c.name {
			t.Errorf("Error() = %q", c.code.Error())
		}
		back, ok := protocol.CodeFromClose(c.code.CloseCode())
		if !ok || back != c.code || c.code.CloseCode() != 4000+int(c.num) {
			t.Errorf("close code of %s: %d → %v, %v", c.code, c.code.CloseCode(), back, ok)
		}
	}
	// A code added without a name shows up here.
	if got := protocol.Code(len(cases) + 1).String(); got != fmt.Sprintf("code_%d", len(cases)+1) {
		t.Errorf("code %d has a name but no row in this table: %q", len(cases)+1, got)
	}
	if got := protocol.Code(99).String(); got != "code_99" {
		t.Errorf("unknown code: %q", got)
	}
}

func TestCodeFromClose(t *testing.T) {
	for _, status := range []int{0, 1000, 1011, 3999, 4000, 5000, 5001} {
		if c, ok := protocol.CodeFromClose(status); ok {
			t.Errorf("CodeFromClose(%d) = %s, want none", status, c)
		}
	}
	if c, ok := protocol.CodeFromClose(4999); !ok || c != 999 {
		t.Errorf("CodeFromClose(4999) = %d, %v", c, ok)
	}
}

func TestCodeOf(t *testing.T) {
	wrapped := fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", protocol.CodeBadKey))
	peer := fmt.Errorf("read: %w", &protocol.PeerError{Code: protocol.CodeReplayedID, Reason: "again"})
	cases := []struct {
		err  error
		want protocol.Code
	}{
		{protocol.CodeBadRecord, protocol.CodeBadRecord},
		{wrapped, protocol.CodeBadKey},
		{peer, protocol.CodeReplayedID},
		{errors.New("plain"), protocol.CodeInternal},
		{nil, protocol.CodeInternal},
	}
	for _, c := range cases {
		if got := protocol.CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if !errors.Is(peer, protocol.CodeReplayedID) {
		t.Error("a PeerError does not unwrap to its code")
	}
	var pe *protocol.PeerError
	if !errors.As(peer, &pe) || pe.Reason != "again" {
		t.Error("errors.As PeerError")
	}
	// The messages name the code and carry the reason. (Not compared
	// exactly: Error formats the Code with %s, which picks Code.Error and
	// doubles the "protocol: " prefix.)
	if got := (&protocol.PeerError{Code: protocol.CodeGoingAway}).Error(); !strings.Contains(got, "peer error") || !strings.Contains(got, "going_away") {
		t.Errorf("PeerError without reason: %q", got)
	}
	if got := pe.Error(); !strings.Contains(got, "replayed_id") || !strings.HasSuffix(got, ": again") {
		t.Errorf("PeerError with reason: %q", got)
	}
}

func TestPeerErrorMessage(t *testing.T) {
	if got := (&protocol.PeerError{Code: protocol.CodeGoingAway}).Error(); got != "protocol: peer error going_away" {
		t.Errorf("got %q", got)
	}
	if got := (&protocol.PeerError{Code: protocol.CodeReplayedID, Reason: "again"}).Error(); got != "protocol: peer error replayed_id: again" {
		t.Errorf("got %q", got)
	}
}
