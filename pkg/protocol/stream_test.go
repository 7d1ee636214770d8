package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestValidateStream says what each stream and conv_stream request gets
// (docs/protocol.md §8.6).
func TestValidateStream(t *testing.T) {
	const sid = "5c1b0c8e-5b0f-4a3e-9d52-6c0f7f1e2a44"
	room := func(event, body, reason string) *protocol.Message {
		return &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "general", Stream: sid, Event: event, Body: body, Reason: reason}
	}
	conv := func(event string, record []byte, reason string) *protocol.Message {
		return &protocol.Message{Type: protocol.MsgConvStream, ID: testUUID, TS: 1, Conv: sid, Stream: sid, Event: event, Record: record, Reason: reason}
	}
	cases := []struct {
		name string
		m    *protocol.Message
		want error // nil: valid
	}{
		{"start", room("start", "", ""), nil},
		{"delta", room("delta", "hel", ""), nil},
		{"end done", room("end", "", "done"), nil},
		{"end length", room("end", "", "length"), nil},
		{"end no reason", room("end", "", ""), nil},
		{"stop", room("stop", "", ""), nil},
		{"conv start", conv("start", nil, ""), nil},
		{"conv delta", conv("delta", []byte{1}, ""), nil},
		{"conv end", conv("end", []byte{1}, "stop"), nil},
		{"conv stop", conv("stop", nil, ""), nil},
		{"empty delta", room("delta", "", ""), protocol.CodeBadRequest},
		{"conv delta without record", conv("delta", nil, ""), protocol.CodeBadRequest},
		{"unknown event", room("pause", "", ""), protocol.CodeBadRequest},
		{"no event", room("", "", ""), protocol.CodeBadRequest},
		{"reason on delta", room("delta", "x", "done"), protocol.CodeBadRequest},
		{"unknown reason", room("end", "", "bored"), protocol.CodeBadRequest},
		{"body on stop", room("stop", "x", ""), protocol.CodeBadRequest},
		{"body too large", room("delta", strings.Repeat("x", protocol.MaxBody+1), ""), protocol.CodeTooLarge},
		{"body not UTF-8", room("delta", "\xff", ""), protocol.CodeBadRequest},
		{"record on stream", &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "general", Stream: sid, Event: "delta", Body: "x", Record: []byte{1}}, protocol.CodeBadRequest},
		{"body on conv_stream", &protocol.Message{Type: protocol.MsgConvStream, ID: testUUID, TS: 1, Conv: sid, Stream: sid, Event: "delta", Body: "x", Record: []byte{1}}, protocol.CodeBadRequest},
		{"record on conv stop", conv("stop", []byte{1}, ""), protocol.CodeBadRequest},
		{"record too large", conv("delta", make([]byte, protocol.MaxConvRecord+1), ""), protocol.CodeTooLarge},
		{"bad room", &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "no room", Stream: sid, Event: "start"}, protocol.CodeBadRequest},
		{"bad conv", &protocol.Message{Type: protocol.MsgConvStream, ID: testUUID, TS: 1, Conv: "x", Stream: sid, Event: "start"}, protocol.CodeBadRequest},
		{"no stream", &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "general", Event: "start"}, protocol.CodeBadRequest},
		{"upper-case stream", &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "general", Stream: strings.ToUpper(sid), Event: "start"}, protocol.CodeBadRequest},
		{"nil stream", &protocol.Message{Type: protocol.MsgStream, ID: testUUID, TS: 1, Room: "general", Stream: "00000000-0000-0000-0000-000000000000", Event: "start"}, protocol.CodeBadRequest},
		{"send with stream", &protocol.Message{Type: protocol.MsgSend, ID: testUUID, TS: 1, Room: "general", Body: "x", Stream: sid}, nil},
		{"send with bad stream", &protocol.Message{Type: protocol.MsgSend, ID: testUUID, TS: 1, Room: "general", Body: "x", Stream: "x"}, protocol.CodeBadRequest},
		{"conv_send with bad stream", &protocol.Message{Type: protocol.MsgConvSend, ID: testUUID, TS: 1, Conv: sid, Record: []byte{1}, Stream: "x"}, protocol.CodeBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := protocol.ValidateRequest(c.m)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("ValidateRequest = %v, want %v", err, c.want)
			}
		})
	}
}
