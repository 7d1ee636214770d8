package protocol_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

const testUUID = "0b6f3c8e-58a2-4bd0-9a53-1f0c8a5e2d71"

func TestDecodeMessage(t *testing.T) {
	ok := []struct {
		in   string
		want protocol.Message
	}{
		{`{"t":"end"}`, protocol.Message{Type: "end"}},
		{`{"t":"send","id":"x","ts":5,"room":"r","body":"b","future_field":[1,2]}`, protocol.Message{Type: "send", ID: "x", TS: 5, Room: "r", Body: "b"}},
		{`{"t":"error","code":12,"fatal":true}`, protocol.Message{Type: "error", Code: protocol.CodeReplayedID, Fatal: true}},
	}
	for _, c := range ok {
		m, err := protocol.DecodeMessage([]byte(c.in))
		if err != nil || !reflect.DeepEqual(*m, c.want) {
			t.Errorf("%s: %+v, %v", c.in, m, err)
		}
	}
	bad := []string{
		``, `null`, `{}`, `{"t":""}`, `[]`, `"send"`, `{"t":"send"`, `{"t":5}`,
		`{"t":"send","ts":"now"}`, `{"t":"error","code":65536}`, `{"t":"error","code":-1}`,
		`{"t":"send"} trailing`,
	}
	for _, in := range bad {
		m, err := protocol.DecodeMessage([]byte(in))
		if !errors.Is(err, protocol.CodeMalformed) {
			t.Errorf("%q: %+v, %v; want malformed", in, m, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "general", "Room_1", "a.b-c", "9", strings.Repeat("x", protocol.MaxNameLen)} {
		if !protocol.ValidName(s) {
			t.Errorf("ValidName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "-a", "_a", ".a", "a b", "é", "a/b", "a\n", strings.Repeat("x", protocol.MaxNameLen+1)} {
		if protocol.ValidName(s) {
			t.Errorf("ValidName(%q) = true", s)
		}
	}
}

func TestValidUserName(t *testing.T) {
	for _, s := range []string{"a", "alice", "bob_2", "a.b-c", "0", strings.Repeat("x", protocol.MaxUserLen)} {
		if !protocol.ValidUserName(s) {
			t.Errorf("ValidUserName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "Alice", "-a", ".a", "a b", "é", "a@b", strings.Repeat("x", protocol.MaxUserLen+1)} {
		if protocol.ValidUserName(s) {
			t.Errorf("ValidUserName(%q) = true", s)
		}
	}
}

func ptr(n int64) *int64 { return &n }

func TestValidateRequest(t *testing.T) {
	req := func(typ string, mod func(*protocol.Message)) *protocol.Message {
		m := &protocol.Message{Type: typ, ID: testUUID, TS: 1700000000000, Room: "general", Body: "hi"}
		if mod != nil {
			mod(m)
		}
		return m
	}
	cases := []struct {
		name string
		m    *protocol.Message
		want protocol.Code // 0: valid
	}{
		{"join", req(protocol.MsgJoin, nil), 0},
		{"join with name", req(protocol.MsgJoin, func(m *protocol.Message) { m.Name = "alice" }), 0},
		{"leave", req(protocol.MsgLeave, nil), 0},
		{"send", req(protocol.MsgSend, nil), 0},
		{"send MaxBody", req(protocol.MsgSend, func(m *protocol.Message) { m.Body = strings.Repeat("a", protocol.MaxBody) }), 0},
		{"end", req(protocol.MsgEnd, func(m *protocol.Message) { m.Room = "" }), 0},
		{"send with mid", req(protocol.MsgSend, func(m *protocol.Message) { m.Mid = testUUID }), 0},
		{"join after 0", req(protocol.MsgJoin, func(m *protocol.Message) { m.After = new(int64) }), 0},
		{"history", req(protocol.MsgHistory, func(m *protocol.Message) { m.Before, m.Limit = ptr(9), 500 }), 0},
		{"read", req(protocol.MsgRead, func(m *protocol.Message) { m.Seq = 1 }), 0},
		{"rooms", req(protocol.MsgRooms, func(m *protocol.Message) { m.Room = "" }), 0},

		{"send mid upper case", req(protocol.MsgSend, func(m *protocol.Message) { m.Mid = strings.ToUpper(testUUID) }), protocol.CodeBadRequest},
		{"send mid nil", req(protocol.MsgSend, func(m *protocol.Message) { m.Mid = "00000000-0000-0000-0000-000000000000" }), protocol.CodeBadRequest},
		{"send mid not a uuid", req(protocol.MsgSend, func(m *protocol.Message) { m.Mid = "x" }), protocol.CodeBadRequest},
		{"join after negative", req(protocol.MsgJoin, func(m *protocol.Message) { m.After = ptr(-1) }), protocol.CodeBadRequest},
		{"history after and before", req(protocol.MsgHistory, func(m *protocol.Message) { m.After, m.Before = ptr(1), ptr(5) }), protocol.CodeBadRequest},
		{"history before negative", req(protocol.MsgHistory, func(m *protocol.Message) { m.Before = ptr(-1) }), protocol.CodeBadRequest},
		{"history limit negative", req(protocol.MsgHistory, func(m *protocol.Message) { m.Limit = -1 }), protocol.CodeBadRequest},
		{"history bad room", req(protocol.MsgHistory, func(m *protocol.Message) { m.Room = "" }), protocol.CodeBadRequest},
		{"read seq 0", req(protocol.MsgRead, nil), protocol.CodeBadRequest},
		{"read conv", req(protocol.MsgRead, func(m *protocol.Message) { m.Room, m.Conv, m.Seq = "", testUUID, 1 }), 0},
		{"read room and conv", req(protocol.MsgRead, func(m *protocol.Message) { m.Conv, m.Seq = testUUID, 1 }), protocol.CodeBadRequest},
		{"read conv not canonical", req(protocol.MsgRead, func(m *protocol.Message) { m.Room, m.Conv, m.Seq = "", strings.ToUpper(testUUID), 1 }), protocol.CodeBadRequest},
		{"conv_open", req(protocol.MsgConvOpen, func(m *protocol.Message) { m.User = "bob" }), 0},
		{"conv_open bad user", req(protocol.MsgConvOpen, func(m *protocol.Message) { m.User = "Bob" }), protocol.CodeBadRequest},
		{"convs", req(protocol.MsgConvs, nil), 0},
		{"conv_keys", req(protocol.MsgConvKeys, func(m *protocol.Message) { m.Conv = testUUID }), 0},
		{"conv_keys no conv", req(protocol.MsgConvKeys, nil), protocol.CodeBadRequest},
		{"conv_keys nil conv", req(protocol.MsgConvKeys, func(m *protocol.Message) { m.Conv = "00000000-0000-0000-0000-000000000000" }), protocol.CodeBadRequest},
		{"conv_keys negative", req(protocol.MsgConvKeys, func(m *protocol.Message) { m.Conv, m.Version = testUUID, -1 }), protocol.CodeBadRequest},
		{"conv_put_key", req(protocol.MsgConvPutKey, func(m *protocol.Message) { m.Conv, m.Version, m.Envelope = testUUID, 1, []byte{1} }), 0},
		{"conv_put_key version 0", req(protocol.MsgConvPutKey, func(m *protocol.Message) { m.Conv, m.Envelope = testUUID, []byte{1} }), protocol.CodeBadRequest},
		{"conv_put_key no envelope", req(protocol.MsgConvPutKey, func(m *protocol.Message) { m.Conv, m.Version = testUUID, 1 }), protocol.CodeBadRequest},
		{"conv_put_key too large", req(protocol.MsgConvPutKey, func(m *protocol.Message) {
			m.Conv, m.Version, m.Envelope = testUUID, 1, make([]byte, protocol.MaxConvEnvelope+1)
		}), protocol.CodeTooLarge},
		{"conv_send", req(protocol.MsgConvSend, func(m *protocol.Message) { m.Conv, m.Record = testUUID, []byte{1} }), 0},
		{"conv_send no record", req(protocol.MsgConvSend, func(m *protocol.Message) { m.Conv = testUUID }), protocol.CodeBadRequest},
		{"conv_send too large", req(protocol.MsgConvSend, func(m *protocol.Message) { m.Conv, m.Record = testUUID, make([]byte, protocol.MaxConvRecord+1) }), protocol.CodeTooLarge},
		{"conv_history", req(protocol.MsgConvHistory, func(m *protocol.Message) { m.Conv, m.After = testUUID, ptr(0) }), 0},
		{"conv_history after and before", req(protocol.MsgConvHistory, func(m *protocol.Message) { m.Conv, m.After, m.Before = testUUID, ptr(1), ptr(5) }), protocol.CodeBadRequest},
		{"conv_history limit negative", req(protocol.MsgConvHistory, func(m *protocol.Message) { m.Conv, m.Limit = testUUID, -1 }), protocol.CodeBadRequest},
		{"read bad room", req(protocol.MsgRead, func(m *protocol.Message) { m.Room, m.Seq = "a b", 1 }), protocol.CodeBadRequest},

		{"no id", req(protocol.MsgSend, func(m *protocol.Message) { m.ID = "" }), protocol.CodeBadRequest},
		// Only the canonical form: a case variant of a used id must not
		// slip past the replay check.
		{"upper-case uuid", req(protocol.MsgEnd, func(m *protocol.Message) { m.ID = strings.ToUpper(testUUID) }), protocol.CodeBadRequest},
		{"id not a uuid", req(protocol.MsgSend, func(m *protocol.Message) { m.ID = "not-a-uuid" }), protocol.CodeBadRequest},
		{"uuid without dashes", req(protocol.MsgSend, func(m *protocol.Message) { m.ID = strings.ReplaceAll(testUUID, "-", "") }), protocol.CodeBadRequest},
		{"uuid in braces", req(protocol.MsgSend, func(m *protocol.Message) { m.ID = "{" + testUUID + "}" }), protocol.CodeBadRequest},
		{"urn uuid", req(protocol.MsgSend, func(m *protocol.Message) { m.ID = "urn:uuid:" + testUUID }), protocol.CodeBadRequest},
		{"no timestamp", req(protocol.MsgSend, func(m *protocol.Message) { m.TS = 0 }), protocol.CodeBadRequest},
		{"negative timestamp", req(protocol.MsgSend, func(m *protocol.Message) { m.TS = -1 }), protocol.CodeBadRequest},
		{"join bad room", req(protocol.MsgJoin, func(m *protocol.Message) { m.Room = "a b" }), protocol.CodeBadRequest},
		{"join no room", req(protocol.MsgJoin, func(m *protocol.Message) { m.Room = "" }), protocol.CodeBadRequest},
		{"join bad name", req(protocol.MsgJoin, func(m *protocol.Message) { m.Name = "-x" }), protocol.CodeBadRequest},
		{"leave bad room", req(protocol.MsgLeave, func(m *protocol.Message) { m.Room = "" }), protocol.CodeBadRequest},
		{"send bad room", req(protocol.MsgSend, func(m *protocol.Message) { m.Room = "é" }), protocol.CodeBadRequest},
		{"send empty body", req(protocol.MsgSend, func(m *protocol.Message) { m.Body = "" }), protocol.CodeBadRequest},
		{"send invalid UTF-8", req(protocol.MsgSend, func(m *protocol.Message) { m.Body = "\xff" }), protocol.CodeBadRequest},
		{"send body too large", req(protocol.MsgSend, func(m *protocol.Message) { m.Body = strings.Repeat("a", protocol.MaxBody+1) }), protocol.CodeTooLarge},
		{"register", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig = "alice", "pw", &protocol.KeyBundle{}, []byte{1}
		}), 0},
		{"login", req(protocol.MsgLogin, func(m *protocol.Message) { m.User, m.Password, m.Sig = "alice", "pw", []byte{1} }), 0},
		{"login with new keys", req(protocol.MsgLogin, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig = "alice", "pw", &protocol.KeyBundle{}, []byte{1}
		}), 0},
		{"auth", req(protocol.MsgAuth, func(m *protocol.Message) { m.User, m.Sig = "alice", []byte{1} }), 0},
		{"lookup", req(protocol.MsgLookup, func(m *protocol.Message) { m.User = "bob" }), 0},
		{"register upper-case user", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig = "Alice", "pw", &protocol.KeyBundle{}, []byte{1}
		}), protocol.CodeBadRequest},
		{"register no password", req(protocol.MsgRegister, func(m *protocol.Message) { m.User, m.Keys, m.Sig = "alice", &protocol.KeyBundle{}, []byte{1} }), protocol.CodeBadRequest},
		{"register password too long", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig = "alice", strings.Repeat("p", protocol.MaxPasswordLen+1), &protocol.KeyBundle{}, []byte{1}
		}), protocol.CodeBadRequest},
		{"register no keys", req(protocol.MsgRegister, func(m *protocol.Message) { m.User, m.Password, m.Sig = "alice", "pw", []byte{1} }), protocol.CodeBadRequest},
		{"register no signature", req(protocol.MsgRegister, func(m *protocol.Message) { m.User, m.Password, m.Keys = "alice", "pw", &protocol.KeyBundle{} }), protocol.CodeBadRequest},
		{"login signature too large", req(protocol.MsgLogin, func(m *protocol.Message) {
			m.User, m.Password, m.Sig = "alice", "pw", make([]byte, protocol.MaxSignature+1)
		}), protocol.CodeBadRequest},
		{"auth with a password is fine", req(protocol.MsgAuth, func(m *protocol.Message) { m.User, m.Password, m.Sig = "alice", "x", []byte{1} }), 0},
		{"auth with keys", req(protocol.MsgAuth, func(m *protocol.Message) { m.User, m.Keys, m.Sig = "alice", &protocol.KeyBundle{}, []byte{1} }), protocol.CodeBadRequest},
		{"auth no user", req(protocol.MsgAuth, func(m *protocol.Message) { m.Sig = []byte{1} }), protocol.CodeBadRequest},
		{"lookup bad user", req(protocol.MsgLookup, func(m *protocol.Message) { m.User = "a b" }), protocol.CodeBadRequest},

		// Proof of possession (§10.4). A missing proof is the server's
		// bad_key; a malformed one, or one without keys, is bad_request.
		{"key_challenge", req(protocol.MsgKeyChallenge, func(m *protocol.Message) { m.Key = []byte("der") }), 0},
		{"key_challenge without key", req(protocol.MsgKeyChallenge, nil), protocol.CodeBadRequest},
		{"register with proof", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig, m.Proof = "alice", "pw", &protocol.KeyBundle{}, []byte{1}, make([]byte, protocol.ChallengeSize)
		}), 0},
		{"login with new keys and proof", req(protocol.MsgLogin, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig, m.Proof = "alice", "pw", &protocol.KeyBundle{}, []byte{1}, make([]byte, protocol.ChallengeSize)
		}), 0},
		{"register short proof", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig, m.Proof = "alice", "pw", &protocol.KeyBundle{}, []byte{1}, make([]byte, protocol.ChallengeSize-1)
		}), protocol.CodeBadRequest},
		{"register empty proof", req(protocol.MsgRegister, func(m *protocol.Message) {
			m.User, m.Password, m.Keys, m.Sig, m.Proof = "alice", "pw", &protocol.KeyBundle{}, []byte{1}, []byte{}
		}), protocol.CodeBadRequest},
		{"login proof without keys", req(protocol.MsgLogin, func(m *protocol.Message) {
			m.User, m.Password, m.Sig, m.Proof = "alice", "pw", []byte{1}, make([]byte, protocol.ChallengeSize)
		}), protocol.CodeBadRequest},
		{"auth with proof", req(protocol.MsgAuth, func(m *protocol.Message) {
			m.User, m.Sig, m.Proof = "alice", []byte{1}, make([]byte, protocol.ChallengeSize)
		}), protocol.CodeBadRequest},
		{"challenge is no request", req(protocol.MsgChallenge, nil), protocol.CodeBadRequest},
		{"passwd", req(protocol.MsgPasswd, func(m *protocol.Message) {
			m.User, m.Password, m.NewPassword, m.Sig = "alice", "pw", "new pw", []byte{1}
		}), 0},
		{"passwd no user", req(protocol.MsgPasswd, func(m *protocol.Message) { m.Password, m.NewPassword, m.Sig = "pw", "new pw", []byte{1} }), protocol.CodeBadRequest},
		{"passwd no password", req(protocol.MsgPasswd, func(m *protocol.Message) { m.User, m.NewPassword, m.Sig = "alice", "new pw", []byte{1} }), protocol.CodeBadRequest},
		{"passwd no new password", req(protocol.MsgPasswd, func(m *protocol.Message) { m.User, m.Password, m.Sig = "alice", "pw", []byte{1} }), protocol.CodeBadRequest},
		{"passwd new password too long", req(protocol.MsgPasswd, func(m *protocol.Message) {
			m.User, m.Password, m.NewPassword, m.Sig = "alice", "pw", strings.Repeat("p", protocol.MaxPasswordLen+1), []byte{1}
		}), protocol.CodeBadRequest},
		{"passwd no signature", req(protocol.MsgPasswd, func(m *protocol.Message) { m.User, m.Password, m.NewPassword = "alice", "pw", "new pw" }), protocol.CodeBadRequest},
		{"passwd with keys", req(protocol.MsgPasswd, func(m *protocol.Message) {
			m.User, m.Password, m.NewPassword, m.Keys, m.Sig = "alice", "pw", "new pw", &protocol.KeyBundle{}, []byte{1}
		}), protocol.CodeBadRequest},
		{"server type", req(protocol.MsgReady, nil), protocol.CodeBadRequest},
		{"unknown type", req("dance", nil), protocol.CodeBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := protocol.ValidateRequest(tc.m)
			if tc.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, err, tc.want)
			if protocol.CodeOf(err).Fatal() {
				t.Fatalf("%s is fatal; request errors must not be", protocol.CodeOf(err))
			}
		})
	}
}

// goldenAppMessages are one of each application message, encoded in
// testdata/golden/app_messages.jsonl to pin the JSON field names.
var goldenAppMessages = []protocol.Message{
	{Type: protocol.MsgReady, Session: &protocol.SessionInfo{ID: "404142434445464748494a4b4c4d4e4f", TTL: 1800, Name: "anon-40414243", ServerTime: 1700000000000, Window: 300}},
	{Type: protocol.MsgJoin, ID: testUUID, TS: 1700000000001, Room: "general", Name: "alice"},
	{Type: protocol.MsgJoined, Ref: testUUID, TS: 1700000000002, Room: "general", Members: []string{"alice", "bob"}},
	{Type: protocol.MsgSend, ID: testUUID, TS: 1700000000003, Room: "general", Body: "hello"},
	{Type: protocol.MsgMessage, ID: testUUID, TS: 1700000000003, Room: "general", From: "alice", Body: "hello"},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000004},
	{Type: protocol.MsgPresence, TS: 1700000000005, Room: "general", From: "bob", Event: "leave"},
	{Type: protocol.MsgLeave, ID: testUUID, TS: 1700000000006, Room: "general"},
	{Type: protocol.MsgLeft, Ref: testUUID, TS: 1700000000007, Room: "general"},
	{Type: protocol.MsgError, Ref: testUUID, Code: protocol.CodeReplayedID, Error: "message id already used"},
	{Type: protocol.MsgError, Code: protocol.CodeSlowConsumer, Error: "send queue full", Fatal: true},
	{Type: protocol.MsgEnd, ID: testUUID, TS: 1700000000008},
	{Type: protocol.MsgRegister, ID: testUUID, TS: 1700000000009, User: "alice", Password: "correct horse",
		Keys: &protocol.KeyBundle{Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}, Sig: []byte("auth-sig")},
	{Type: protocol.MsgLogin, ID: testUUID, TS: 1700000000010, User: "alice", Password: "correct horse", Sig: []byte("auth-sig")},
	{Type: protocol.MsgAuth, ID: testUUID, TS: 1700000000011, User: "alice", Sig: []byte("auth-sig")},
	{Type: protocol.MsgAuthed, Ref: testUUID, TS: 1700000000012, User: "alice", Version: 2, Fingerprint: "00112233"},
	{Type: protocol.MsgLookup, ID: testUUID, TS: 1700000000013, User: "bob"},
	{Type: protocol.MsgKeys, Ref: testUUID, TS: 1700000000014, User: "bob", Version: 1, Fingerprint: "44556677",
		Keys: &protocol.KeyBundle{Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}},
	{Type: protocol.MsgKeyChange, TS: 1700000000015, Room: "general", User: "bob", Version: 2, Fingerprint: "8899aabb"},
	{Type: protocol.MsgReady, Session: &protocol.SessionInfo{ID: "404142434445464748494a4b4c4d4e4f", TTL: 1800, Resumed: true, Name: "alice", User: "alice", ServerTime: 1700000000000, Window: 300}},
	{Type: protocol.MsgKeyChallenge, ID: testUUID, TS: 1700000000016, Key: []byte("encryption-der")},
	{Type: protocol.MsgChallenge, Ref: testUUID, TS: 1700000000017, Wrapped: []byte("wrapped-challenge")},
	{Type: protocol.MsgRegister, ID: testUUID, TS: 1700000000018, User: "alice", Password: "correct horse",
		Keys: &protocol.KeyBundle{Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}, Sig: []byte("auth-sig"), Proof: []byte("proof-of-possession")},
	{Type: protocol.MsgLogin, ID: testUUID, TS: 1700000000019, User: "alice", Password: "correct horse",
		Keys: &protocol.KeyBundle{Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}, Sig: []byte("auth-sig"), Proof: []byte("proof-of-possession")},
	{Type: protocol.MsgPasswd, ID: testUUID, TS: 1700000000020, User: "alice", Password: "correct horse", NewPassword: "battery staple", Sig: []byte("auth-sig")},
	// Room history (docs/protocol.md §8.4).
	{Type: protocol.MsgSend, ID: testUUID, TS: 1700000000021, Room: "general", Body: "hello", Mid: testMid},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000022, Seq: 42, Epoch: testEpoch},
	{Type: protocol.MsgMessage, ID: testMid, TS: 1700000000022, Room: "general", From: "alice", Body: "hello", Seq: 42},
	{Type: protocol.MsgJoin, ID: testUUID, TS: 1700000000023, Room: "general", After: ptr(0)},
	{Type: protocol.MsgJoined, Ref: testUUID, TS: 1700000000024, Room: "general", Members: []string{"alice"}, Epoch: testEpoch, Head: 600, After: ptr(40), More: true},
	{Type: protocol.MsgHistory, ID: testUUID, TS: 1700000000025, Room: "general", Before: ptr(42), Limit: 1},
	{Type: protocol.MsgHistory, Ref: testUUID, TS: 1700000000026, Room: "general", Epoch: testEpoch, Head: 42, More: true,
		Msgs: []*protocol.Message{{Type: protocol.MsgMessage, ID: testMid, TS: 1700000000022, Room: "general", From: "alice", Body: "hello", Seq: 41}}},
	{Type: protocol.MsgRead, ID: testUUID, TS: 1700000000027, Room: "general", Seq: 42},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000028, Room: "general", Seq: 42},
	{Type: protocol.MsgRooms, ID: testUUID, TS: 1700000000029},
	{Type: protocol.MsgRooms, Ref: testUUID, TS: 1700000000030, Rooms: []protocol.RoomPosition{{Room: "general", Head: 42, Read: 40, Epoch: testEpoch}, {Room: "quiet"}}},
	{Type: protocol.MsgMessage, ID: testMid, TS: 1700000000031, Room: "general", From: "carol", Anon: true, Body: "hi", Seq: 43},
	// Devices and link codes (docs/protocol.md §10.3, §10.5).
	{Type: protocol.MsgDevices, ID: testUUID, TS: 1700000000032},
	{Type: protocol.MsgKeys, Ref: testUUID, TS: 1700000000033, User: "alice", Device: testDevice, Fingerprint: "8899aabb",
		Devices: []protocol.DeviceInfo{{Keys: &protocol.KeyBundle{Device: testDevice, Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}, Name: "laptop", Fingerprint: "ccddeeff", Created: 1700000000000}}},
	{Type: protocol.MsgRemoveDevice, ID: testUUID, TS: 1700000000034, User: "alice", Device: testDevice, Sig: []byte("auth-sig")},
	{Type: protocol.MsgKeyChange, TS: 1700000000035, User: "alice", Device: testDevice, Event: "device_removed", Fingerprint: "8899aabb"},
	{Type: protocol.MsgLinkStart, ID: testUUID, TS: 1700000000036},
	{Type: protocol.MsgLink, Ref: testUUID, TS: 1700000000037, Link: []byte("link-id8"), Expires: 1700000120037},
	{Type: protocol.MsgLinkJoin, ID: testUUID, TS: 1700000000038, User: "alice", Link: []byte("link-id8"), DeviceName: "phone",
		Keys: &protocol.KeyBundle{Device: testDevice, Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")},
		Sig:  []byte("auth-sig"), Proof: []byte("proof-of-possession"), MAC: []byte("link-mac")},
	{Type: protocol.MsgLinkOffer, TS: 1700000000039, Link: []byte("link-id8"), User: "alice", DeviceName: "phone",
		Keys: &protocol.KeyBundle{Device: testDevice, Signing: []byte("signing-der"), Encryption: []byte("encryption-der"), SelfSignature: []byte("self-sig")}, MAC: []byte("link-mac")},
	{Type: protocol.MsgLinkApprove, ID: testUUID, TS: 1700000000040, Link: []byte("link-id8"), Device: testDevice, Sig: []byte("approval")},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000041, Device: testDevice},
	{Type: protocol.MsgLinkDone, TS: 1700000000042, Link: []byte("link-id8"), User: "alice", Device: testDevice},
	// Direct conversations (docs/protocol.md §8.5).
	{Type: protocol.MsgConvOpen, ID: testUUID, TS: 1700000000043, User: "bob"},
	{Type: protocol.MsgConv, Ref: testUUID, TS: 1700000000044, Conv: testConv, User: "bob", Version: 1, Head: 7, Epoch: testEpoch, Seq: 5},
	{Type: protocol.MsgConvs, ID: testUUID, TS: 1700000000045},
	{Type: protocol.MsgConvs, Ref: testUUID, TS: 1700000000046, Convs: []protocol.ConvPosition{{Conv: testConv, User: "bob", Version: 1, Head: 7, Read: 5, Epoch: testEpoch}}},
	{Type: protocol.MsgConvPutKey, ID: testUUID, TS: 1700000000047, Conv: testConv, Version: 2, Envelope: []byte("envelope")},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000048, Conv: testConv, Version: 2},
	{Type: protocol.MsgConvKey, TS: 1700000000048, Conv: testConv, From: "alice", Version: 2, Envelope: []byte("envelope")},
	{Type: protocol.MsgConvKeys, ID: testUUID, TS: 1700000000049, Conv: testConv},
	{Type: protocol.MsgConvKeys, Ref: testUUID, TS: 1700000000050, Conv: testConv,
		Envelopes: []*protocol.Message{{Type: protocol.MsgConvKey, TS: 1700000000048, Conv: testConv, From: "alice", Version: 2, Envelope: []byte("envelope")}}},
	{Type: protocol.MsgConvSend, ID: testUUID, TS: 1700000000051, Conv: testConv, Record: []byte("record")},
	{Type: protocol.MsgAck, Ref: testUUID, TS: 1700000000052, Conv: testConv, Seq: 8, Epoch: testEpoch},
	{Type: protocol.MsgConvMsg, ID: testMid, TS: 1700000000052, Conv: testConv, From: "alice", Seq: 8, Epoch: testEpoch, Record: []byte("record")},
	{Type: protocol.MsgConvHistory, ID: testUUID, TS: 1700000000053, Conv: testConv, After: ptr(5), Limit: 10},
	{Type: protocol.MsgRead, ID: testUUID, TS: 1700000000054, Conv: testConv, Seq: 8},
	// Streamed answers and mentions (docs/protocol.md §8.6).
	{Type: protocol.MsgStream, ID: testUUID, TS: 1700000000055, Room: "general", Stream: testMid, Event: protocol.StreamDelta, Body: "Paris is"},
	{Type: protocol.MsgStream, TS: 1700000000056, Room: "general", From: "bot", Stream: testMid, Event: protocol.StreamEnd, Reason: protocol.ReasonDone},
	{Type: protocol.MsgConvStream, ID: testUUID, TS: 1700000000057, Conv: testConv, Stream: testMid, Event: protocol.StreamDelta, Record: []byte("record")},
	{Type: protocol.MsgConvStream, TS: 1700000000058, Conv: testConv, From: "bot", Stream: testMid, Event: protocol.StreamStop},
	{Type: protocol.MsgSend, ID: testUUID, TS: 1700000000059, Room: "general", Body: "Paris is the capital.", Mid: testMid, Stream: testMid},
	{Type: protocol.MsgMessage, ID: testMid, TS: 1700000000060, Room: "general", From: "bot", Body: "Paris is the capital.", Seq: 44, Stream: testMid},
	{Type: protocol.MsgMention, TS: 1700000000061, Room: "general", From: "alice", User: "bot", Seq: 44},
	// Member counts (docs/protocol.md §8.3, §8.7).
	{Type: protocol.MsgJoined, Ref: testUUID, TS: 1700000000062, Room: "general", Members: []string{"alice", "bob"}, Count: 2},
	{Type: protocol.MsgPresence, TS: 1700000000063, Room: "town-square", Event: protocol.PresenceCount, Count: 4812},
}

const (
	testMid    = "5c1b0c8e-5b0f-4a3e-9d52-6c0f7f1e2a44"
	testEpoch  = "0b7e3f3c-8d2a-4a7e-9f0e-2f1d6c5b4a39"
	testDevice = "a11ce000-0000-4000-8000-000000000001"
	testConv   = "9a7e2b61-0c4d-4f4e-8a51-3b2d9c6e7f10"
)

func TestGoldenAppMessages(t *testing.T) {
	const file = "app_messages.jsonl"
	var enc bytes.Buffer
	for _, m := range goldenAppMessages {
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		enc.Write(b)
		enc.WriteByte('\n')
	}
	if *update {
		writeGolden(t, file, enc.Bytes())
	}
	want, err := os.ReadFile(goldenPath(file))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	gotLines, wantLines := strings.Split(enc.String(), "\n"), strings.Split(string(want), "\n")
	if len(gotLines) != len(wantLines) {
		t.Fatalf("%d messages, golden has %d", len(gotLines), len(wantLines))
	}
	for i := range gotLines {
		if gotLines[i] != wantLines[i] {
			t.Errorf("the JSON encoding changed (run with -update only if intended):\n got %s\nwant %s", gotLines[i], wantLines[i])
		}
	}
	for i, line := range wantLines[:len(wantLines)-1] {
		m, err := protocol.DecodeMessage([]byte(line))
		if err != nil || !reflect.DeepEqual(*m, goldenAppMessages[i]) {
			t.Errorf("decode %s: %+v, %v", line, m, err)
		}
	}
}
