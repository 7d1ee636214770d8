package protocol_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// The golden files pin the wire format: an accidental change to an
// encoding, a label or the key schedule fails these tests. They are
// regenerated with -update, which is only right for an intended protocol
// change (then docs/protocol.md, which quotes them, changes too).

func fixedRandom(start byte) (r [protocol.RandomSize]byte) {
	copy(r[:], seq(start, protocol.RandomSize))
	return r
}

func fixedSessionID() (id [protocol.SessionIDSize]byte) {
	copy(id[:], seq(0x40, protocol.SessionIDSize))
	return id
}

// goldenMessages are fixed handshake messages. Key, secret and signature
// fields hold short ASCII placeholders: these files pin the layout, not the
// cryptography (key_schedule.txt does that).
var goldenMessages = []struct {
	file    string
	comment string
	msg     message
	decode  func([]byte) (message, error)
}{
	{
		"client_hello.hex",
		"ClientHello: version 1, random 00..1f, suites [0x0001 AES-256-GCM, 0x0002 AES-256-CBC-HMAC],\nsession key \"session-key-der\" (placeholder for PKIX DER), no resume id.",
		&protocol.ClientHello{
			Version:    protocol.Version,
			Random:     fixedRandom(0x00),
			Suites:     []protocol.Suite{protocol.SuiteAES256GCM, protocol.SuiteAES256CBCHMAC},
			SessionKey: []byte("session-key-der"),
		},
		decodeAs(protocol.UnmarshalClientHello),
	},
	{
		"client_hello_resume.hex",
		"ClientHello asking to resume: version 1, random 00..1f, suites [0x0001],\nno session key (ResumeOnly), resume id 40..4f.",
		&protocol.ClientHello{
			Version:  protocol.Version,
			Random:   fixedRandom(0x00),
			Suites:   []protocol.Suite{protocol.SuiteAES256GCM},
			ResumeID: seq(0x40, protocol.SessionIDSize),
		},
		decodeAs(protocol.UnmarshalClientHello),
	},
	{
		"server_hello.hex",
		"ServerHello, full handshake: version 1, random 20..3f, suite 0x0001, flags 0,\nsession id 40..4f, identity key \"identity-key-der\", wrapped secret \"wrapped-secret\" (placeholders).",
		&protocol.ServerHello{
			Version:       protocol.Version,
			Random:        fixedRandom(0x20),
			Suite:         protocol.SuiteAES256GCM,
			SessionID:     fixedSessionID(),
			IdentityKey:   []byte("identity-key-der"),
			WrappedSecret: []byte("wrapped-secret"),
		},
		decodeAs(protocol.UnmarshalServerHello),
	},
	{
		"server_hello_resumed.hex",
		"ServerHello, resumed: version 1, random 20..3f, suite 0x0002, flags 0x01 (resumed),\nsession id 40..4f, identity key \"identity-key-der\", empty wrapped secret.",
		&protocol.ServerHello{
			Version:     protocol.Version,
			Random:      fixedRandom(0x20),
			Suite:       protocol.SuiteAES256CBCHMAC,
			Resumed:     true,
			SessionID:   fixedSessionID(),
			IdentityKey: []byte("identity-key-der"),
		},
		decodeAs(protocol.UnmarshalServerHello),
	},
	{
		"server_verify.hex",
		"ServerVerify: signature \"signature\" (placeholder).",
		&protocol.ServerVerify{Signature: []byte("signature")},
		decodeAs(protocol.UnmarshalServerVerify),
	},
	{
		"finished.hex",
		"Finished: verify data 60..7f.",
		&protocol.Finished{VerifyData: [protocol.FinishedSize]byte(seq(0x60, protocol.FinishedSize))},
		decodeAs(protocol.UnmarshalFinished),
	},
	{
		"alert.hex",
		"Alert: code 6 (bad_finished), reason \"bad finished\".",
		&protocol.Alert{Code: protocol.CodeBadFinished, Reason: "bad finished"},
		decodeAs(protocol.UnmarshalAlert),
	},
}

func TestGoldenMessages(t *testing.T) {
	for _, g := range goldenMessages {
		t.Run(g.file, func(t *testing.T) {
			enc := g.msg.Marshal()
			if *update {
				writeGoldenHex(t, g.file, g.comment, enc)
			}
			want := readGoldenHex(t, g.file)
			if !bytes.Equal(enc, want) {
				t.Fatalf("the wire encoding changed (run with -update only if intended, and update docs/protocol.md):\n got %x\nwant %x", enc, want)
			}
			got, err := g.decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, g.msg) {
				t.Fatalf("decoded %+v, want %+v", got, g.msg)
			}
		})
	}
}

// Key-schedule vector inputs: fixed bytes standing in for the session
// secret and the transcript hashes at each point of the handshake.
var (
	ksSecret        = seq(0x00, 32) // session secret
	ksKeyTH         = seq(0x20, 32) // transcript hash after ServerHello
	ksServerFinTH   = seq(0x40, 32) // hash of everything before the server's Finished
	ksClientFinTH   = seq(0x60, 32) // hash of everything before the client's Finished
	ksFullTH        = seq(0x80, 32) // hash of the whole handshake
	ksRecordPayload = []byte(`{"t":"end"}`)
)

type kv struct {
	name  string
	value []byte
}

// keyScheduleVector computes every value the key schedule derives from the
// fixed inputs, through the package's API.
func keyScheduleVector(t *testing.T) []kv {
	t.Helper()
	ks, err := protocol.NewKeySchedule(ksSecret)
	if err != nil {
		t.Fatal(err)
	}
	// The master key is not exported; derive it as docs/protocol.md says
	// and check below that expanding it reproduces the package's values.
	master, err := hkdf.Extract(sha256.New, ksSecret, []byte("messenger v1 extract"))
	if err != nil {
		t.Fatal(err)
	}
	sfin := ks.FinishedMAC(protocol.LabelServerFinished, ksKeyTH, ksServerFinTH)
	cfin := ks.FinishedMAC(protocol.LabelClientFinished, ksKeyTH, ksClientFinTH)
	out := []kv{
		{"secret", ksSecret},
		{"transcript_after_server_hello", ksKeyTH},
		{"transcript_before_server_finished", ksServerFinTH},
		{"transcript_before_client_finished", ksClientFinTH},
		{"transcript_full", ksFullTH},
		{"master", master},
		{"c2s_key", ks.Expand(protocol.LabelClientWrite, ksKeyTH, 32)},
		{"c2s_iv", ks.Expand(protocol.LabelClientIV, ksKeyTH, 12)},
		{"s2c_key", ks.Expand(protocol.LabelServerWrite, ksKeyTH, 32)},
		{"s2c_iv", ks.Expand(protocol.LabelServerIV, ksKeyTH, 12)},
		{"c2s_cbc_enc_mac_keys", ks.Expand(protocol.LabelClientWrite, ksKeyTH, 64)},
		{"s2c_cbc_enc_mac_keys", ks.Expand(protocol.LabelServerWrite, ksKeyTH, 64)},
		{"server_finished_key", ks.Expand(protocol.LabelServerFinished, ksKeyTH, 32)},
		{"server_finished", sfin[:]},
		{"client_finished_key", ks.Expand(protocol.LabelClientFinished, ksKeyTH, 32)},
		{"client_finished", cfin[:]},
		{"exporter", ks.Exporter(ksFullTH)},
		{"record_plaintext", ksRecordPayload},
	}
	// The first two GCM records of each direction, sealed by the layers
	// TrafficKeys returns (GCM records are deterministic).
	for _, side := range []struct {
		name     string
		isServer bool
	}{{"c2s", false}, {"s2c", true}} {
		seal, _, err := ks.TrafficKeys(protocol.SuiteAES256GCM, ksKeyTH, side.isServer)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			frame, err := seal.Seal(ksRecordPayload)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, kv{fmt.Sprintf("%s_gcm_record_%d", side.name, i), frame})
		}
	}
	return out
}

const keyScheduleHeader = `# Key-schedule test vector. docs/protocol.md ("Key schedule") quotes it.
# Inputs are fixed bytes; every output is computed by pkg/protocol:
#   master            = HKDF-Extract(SHA-256, salt "messenger v1 extract", secret)
#   Expand(label, th, n) = HKDF-Expand(master, "messenger v1 " + label + 0x00 + th, n)
#   c2s_key/iv        = Expand("c2s key"/"c2s iv", transcript_after_server_hello, 32/12)
#   s2c_key/iv        = Expand("s2c key"/"s2c iv", transcript_after_server_hello, 32/12)
#   *_cbc_enc_mac_keys = Expand("c2s key"/"s2c key", transcript_after_server_hello, 64): AES key || HMAC key
#   server_finished   = HMAC-SHA256(Expand("server finished", transcript_after_server_hello, 32), transcript_before_server_finished)
#   client_finished   = HMAC-SHA256(Expand("client finished", transcript_after_server_hello, 32), transcript_before_client_finished)
#   exporter          = Expand("exporter", transcript_full, 32)
#   *_gcm_record_N    = record N of that direction sealing record_plaintext (suite 0x0001):
#                       0x17 || seq (8, big-endian) || AES-256-GCM(key, iv XOR seq, plaintext, ad = first 9 bytes)
# Regenerate (only for an intended protocol change): go test ./pkg/protocol -run TestGolden -update
`

func TestGoldenKeySchedule(t *testing.T) {
	const file = "key_schedule.txt"
	vec := keyScheduleVector(t)
	if *update {
		var b strings.Builder
		b.WriteString(keyScheduleHeader)
		for _, e := range vec {
			fmt.Fprintf(&b, "%s: %x\n", e.name, e.value)
		}
		writeGolden(t, file, []byte(b.String()))
	}
	data, err := os.ReadFile(goldenPath(file))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: bad line %q", file, line)
		}
		want[name] = value
	}
	for _, e := range vec {
		w, ok := want[e.name]
		if !ok {
			t.Errorf("%s lacks %s", file, e.name)
			continue
		}
		delete(want, e.name)
		if got := hex.EncodeToString(e.value); got != w {
			t.Errorf("%s changed (the key schedule is part of the wire protocol):\n got %s\nwant %s", e.name, got, w)
		}
	}
	for name := range want {
		t.Errorf("%s has %s, which the test no longer computes", file, name)
	}
}

// TestKeyScheduleConstruction recomputes the vector's values from the
// documented construction with crypto/hkdf and crypto/hmac alone, so the
// golden file and docs/protocol.md describe what the code does.
func TestKeyScheduleConstruction(t *testing.T) {
	vec := map[string][]byte{}
	for _, e := range keyScheduleVector(t) {
		vec[e.name] = e.value
	}
	master := vec["master"]
	expand := func(label string, th []byte, n int) []byte {
		info := "messenger v1 " + label + "\x00" + string(th)
		out, err := hkdf.Expand(sha256.New, master, info, n)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	checks := []struct {
		name string
		want []byte
	}{
		{"c2s_key", expand("c2s key", ksKeyTH, 32)},
		{"c2s_iv", expand("c2s iv", ksKeyTH, 12)},
		{"s2c_key", expand("s2c key", ksKeyTH, 32)},
		{"s2c_iv", expand("s2c iv", ksKeyTH, 12)},
		{"c2s_cbc_enc_mac_keys", expand("c2s key", ksKeyTH, 64)},
		{"s2c_cbc_enc_mac_keys", expand("s2c key", ksKeyTH, 64)},
		{"server_finished_key", expand("server finished", ksKeyTH, 32)},
		{"server_finished", hmacSHA256(expand("server finished", ksKeyTH, 32), ksServerFinTH)},
		{"client_finished_key", expand("client finished", ksKeyTH, 32)},
		{"client_finished", hmacSHA256(expand("client finished", ksKeyTH, 32), ksClientFinTH)},
		{"exporter", expand("exporter", ksFullTH, 32)},
		{"c2s_gcm_record_0", gcmRecord(t, vec["c2s_key"], vec["c2s_iv"], 0, ksRecordPayload)},
		{"c2s_gcm_record_1", gcmRecord(t, vec["c2s_key"], vec["c2s_iv"], 1, ksRecordPayload)},
		{"s2c_gcm_record_0", gcmRecord(t, vec["s2c_key"], vec["s2c_iv"], 0, ksRecordPayload)},
		{"s2c_gcm_record_1", gcmRecord(t, vec["s2c_key"], vec["s2c_iv"], 1, ksRecordPayload)},
	}
	for _, c := range checks {
		if !bytes.Equal(vec[c.name], c.want) {
			t.Errorf("%s:\n package  %x\n docs say %x", c.name, vec[c.name], c.want)
		}
	}
	// The CBC layers TrafficKeys builds use the documented key split.
	for _, side := range []struct {
		name     string
		isServer bool
	}{{"c2s", false}, {"s2c", true}} {
		ks, _ := protocol.NewKeySchedule(ksSecret)
		seal, _, err := ks.TrafficKeys(protocol.SuiteAES256CBCHMAC, ksKeyTH, side.isServer)
		if err != nil {
			t.Fatal(err)
		}
		km := vec[side.name+"_cbc_enc_mac_keys"]
		open, err := protocol.NewCBCRecordLayer(km[:32], km[32:])
		if err != nil {
			t.Fatal(err)
		}
		frame, _ := seal.Seal(ksRecordPayload)
		if pt, err := open.Open(frame); err != nil || !bytes.Equal(pt, ksRecordPayload) {
			t.Errorf("%s CBC record does not open with the documented keys: %v", side.name, err)
		}
	}
}
