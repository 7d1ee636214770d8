package protocol

import (
	"errors"
	"fmt"
)

// Code is a protocol error code, carried in Alert frames, in encrypted
// "error" messages and (as CloseCodeBase+Code) in the WebSocket close frame.
// A Code is itself an error, so the codes double as sentinel errors:
// errors.Is(err, protocol.CodeBadSignature).
type Code uint16

// The error codes. Their numbers are part of the wire protocol: never
// renumber one, only add.
const (
	// CodeUnexpectedMessage: a frame of the wrong type for the state.
	CodeUnexpectedMessage Code = 1
	// CodeMalformed: a frame or message that does not decode.
	CodeMalformed Code = 2
	// CodeUnsupportedVersion: the client's protocol version is not spoken.
	CodeUnsupportedVersion Code = 3
	// CodeNoCommonSuite: no offered cipher suite is supported.
	CodeNoCommonSuite Code = 4
	// CodeBadSignature: the server's signature does not verify, or its key
	// does not match the pinned fingerprint (raised by clients).
	CodeBadSignature Code = 5
	// CodeBadFinished: a Finished MAC does not match the transcript.
	CodeBadFinished Code = 6
	// CodeHandshakeTimeout: the handshake did not finish in time.
	CodeHandshakeTimeout Code = 7
	// CodeFrameTooLarge: a frame exceeds the size limit.
	CodeFrameTooLarge Code = 8
	// CodeBadRecord: a record failed authentication (altered, forged or
	// encrypted under another key).
	CodeBadRecord Code = 9
	// CodeBadSequence: a record's sequence number is not the next one
	// expected (replayed, reordered or dropped record).
	CodeBadSequence Code = 10
	// CodeSessionUnknown: the session to resume does not exist or expired.
	CodeSessionUnknown Code = 11
	// CodeReplayedID: an application message id was already used. Not fatal.
	CodeReplayedID Code = 12
	// CodeStaleTimestamp: an application message's timestamp is outside
	// the server's window. Not fatal.
	CodeStaleTimestamp Code = 13
	// CodeSlowConsumer: the peer did not read fast enough; its send queue
	// overflowed.
	CodeSlowConsumer Code = 14
	// CodeInternal: the server failed; the client may retry.
	CodeInternal Code = 15
	// CodeBadKey: a public key does not parse, is not RSA, or breaks the
	// RSA key rule (CheckRSAPublicKey); or a register or login publishing
	// keys lacks a valid proof of possession of the encryption key.
	CodeBadKey Code = 16
	// CodeBadRequest: an application message is invalid for its type
	// (missing room, empty body, unknown type). Not fatal.
	CodeBadRequest Code = 17
	// CodeTooLarge: an application message body exceeds the limit. Not fatal.
	CodeTooLarge Code = 18
	// CodeUnavailable: a backend (Redis, the database) is unreachable; the
	// request was not carried out and may be retried. Not fatal.
	CodeUnavailable Code = 19
	// CodeGoingAway: the server is shutting down.
	CodeGoingAway Code = 20
	// CodeSessionEnded: the session was ended explicitly.
	CodeSessionEnded Code = 21
	// CodeAuthFailed: wrong user name, password or signature. The same code
	// and the same work for an unknown user and a wrong password. Not fatal.
	CodeAuthFailed Code = 22
	// CodeRateLimited: too many failed logins for this account or address,
	// or too many registrations from this address; retry later. Not fatal.
	CodeRateLimited Code = 23
	// CodeConflict: the user name is taken. Not fatal.
	CodeConflict Code = 24
	// CodeUnauthenticated: the request needs a logged-in connection. Not
	// fatal.
	CodeUnauthenticated Code = 25
	// CodeNotFound: no such user (key lookups). Not fatal.
	CodeNotFound Code = 26
	// CodeSessionRevoked: the account's password changed, which revoked
	// every session that was logged in before the change, or the session's
	// device was removed (docs/protocol.md §10.3). The session cannot be
	// resumed; log in again (a removed device must be added again).
	CodeSessionRevoked Code = 27
	// CodeLimitReached: a configured limit on a resource was reached
	// (connections or handshakes per address or in total, rooms per
	// connection, members per room). Fatal when it refuses a connection or
	// a handshake; not fatal as the answer to a request.
	CodeLimitReached Code = 28
)

var codeNames = map[Code]string{
	CodeUnexpectedMessage:  "unexpected_message",
	CodeMalformed:          "malformed",
	CodeUnsupportedVersion: "unsupported_version",
	CodeNoCommonSuite:      "no_common_suite",
	CodeBadSignature:       "bad_signature",
	CodeBadFinished:        "bad_finished",
	CodeHandshakeTimeout:   "handshake_timeout",
	CodeFrameTooLarge:      "frame_too_large",
	CodeBadRecord:          "bad_record",
	CodeBadSequence:        "bad_sequence",
	CodeSessionUnknown:     "session_unknown",
	CodeReplayedID:         "replayed_id",
	CodeStaleTimestamp:     "stale_timestamp",
	CodeSlowConsumer:       "slow_consumer",
	CodeInternal:           "internal",
	CodeBadKey:             "bad_key",
	CodeBadRequest:         "bad_request",
	CodeTooLarge:           "too_large",
	CodeUnavailable:        "unavailable",
	CodeGoingAway:          "going_away",
	CodeSessionEnded:       "session_ended",
	CodeAuthFailed:         "auth_failed",
	CodeRateLimited:        "rate_limited",
	CodeConflict:           "conflict",
	CodeUnauthenticated:    "unauthenticated",
	CodeNotFound:           "not_found",
	CodeSessionRevoked:     "session_revoked",
	CodeLimitReached:       "limit_reached",
}

// String returns the code's documented name, e.g. "bad_signature".
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code_%d", uint16(c))
}

// Error implements error.
func (c Code) Error() string { return "protocol: " + c.String() }

// Fatal reports whether the code ends the session. Non-fatal codes answer
// one application message and leave the session open. CodeBadKey and
// CodeBadSignature end a handshake, but answer a register, login or auth
// request without ending the session: the "fatal" field of an error
// message is what counts.
func (c Code) Fatal() bool {
	switch c {
	case CodeReplayedID, CodeStaleTimestamp, CodeBadRequest, CodeTooLarge, CodeUnavailable,
		CodeAuthFailed, CodeRateLimited, CodeConflict, CodeUnauthenticated, CodeNotFound,
		CodeLimitReached:
		return false
	}
	return true
}

// CloseCodeBase is added to a Code to form the WebSocket close status the
// closing side sends (4000-4999 is the range RFC 6455 leaves to
// applications).
const CloseCodeBase = 4000

// CloseCode returns the WebSocket close status for c.
func (c Code) CloseCode() int { return CloseCodeBase + int(c) }

// CodeFromClose maps a WebSocket close status back to a Code; ok is false
// for statuses outside the application range.
func CodeFromClose(status int) (Code, bool) {
	if status <= CloseCodeBase || status >= CloseCodeBase+1000 {
		return 0, false
	}
	return Code(status - CloseCodeBase), true
}

// PeerError is an error reported by the other side: an Alert frame, an
// encrypted error message or a close status. It unwraps to its Code, so
// errors.Is(err, CodeReplayedID) works on it.
type PeerError struct {
	Code   Code
	Reason string
	Ref    string // id of the application message it answers, if any
	// Sealed is true when the error arrived inside an authenticated record,
	// so it really comes from the peer. Alerts and close frames are not
	// authenticated: anyone on the path can forge them (and could cut the
	// connection anyway), so never treat them as proof of anything.
	Sealed bool
}

// Error implements error.
func (e *PeerError) Error() string {
	if e.Reason == "" {
		return "protocol: peer error " + e.Code.String()
	}
	return "protocol: peer error " + e.Code.String() + ": " + e.Reason
}

// Unwrap returns the Code.
func (e *PeerError) Unwrap() error { return e.Code }

// CodeOf returns the Code carried by err (directly or wrapped), or
// CodeInternal when err carries none.
func CodeOf(err error) Code {
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return CodeInternal
}
