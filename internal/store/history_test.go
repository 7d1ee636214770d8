package store

import (
	"encoding/base64"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"
)

var (
	testEpoch = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
	testConv  = uuid.MustParse("a1b2c3d4-e5f6-4789-8abc-def012345678")
)

// validCursors are cursors Encode must accept; they seed the fuzz target.
var validCursors = []Cursor{
	{Stream: "room:lobby", Position: StreamPosition{Seq: 42, Epoch: testEpoch}},
	{Stream: "room:a", Position: StreamPosition{}},
	{Stream: "room:" + strings.Repeat("z", MaxRoomNameLen), Position: StreamPosition{Seq: math.MaxInt64, Epoch: testEpoch}},
	{Stream: ConversationStream(testConv), Position: StreamPosition{Seq: 1, Epoch: testEpoch}},
	{Stream: ConversationStream(testConv), Position: StreamPosition{Seq: 0}},
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range validCursors {
		t.Run(c.Stream, func(t *testing.T) {
			s, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(s, "+/=\n") {
				t.Errorf("cursor %q is not unpadded base64url", s)
			}
			got, err := ParseCursor(s)
			if err != nil || got != c {
				t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", s, got, err, c)
			}
		})
	}
	t.Run("room names are normalised", func(t *testing.T) {
		s, err := Cursor{Stream: "room:Lobby", Position: StreamPosition{Seq: 1}}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseCursor(s); err != nil || got.Stream != "room:lobby" {
			t.Errorf("ParseCursor = %+v, %v; want room:lobby", got, err)
		}
	})
}

func TestCursorEncodeRejects(t *testing.T) {
	for _, c := range []Cursor{
		{Stream: "lobby"},
		{Stream: "room:a b"},
		{Stream: "conv:x"},
		{Stream: ConversationStream(uuid.Nil)},
		{Stream: "room:a", Position: StreamPosition{Seq: -1}},
		{Stream: "room:a", Position: StreamPosition{Epoch: "not a uuid"}},
		{Stream: "room:a", Position: StreamPosition{Epoch: uuid.Nil.String()}},
		{Stream: "room:a", Position: StreamPosition{Epoch: strings.ReplaceAll(testEpoch, "-", "")}},
	} {
		if s, err := c.Encode(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Encode(%+v) = %q, %v; want ErrInvalid", c, s, err)
		}
	}
}

func TestParseCursorRejects(t *testing.T) {
	valid, err := validCursors[0].Encode()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(valid)
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	with := func(i int, v byte) string {
		b := append([]byte(nil), raw...)
		b[i] = v
		return enc(b)
	}
	upper := append([]byte(nil), raw...)
	copy(upper[3:], "LOBBY")
	maxSeq := append([]byte(nil), raw...)
	copy(maxSeq[len(maxSeq)-8:], []byte{0x80, 0, 0, 0, 0, 0, 0, 0})
	cases := map[string]string{
		"empty":                  "",
		"padded":                 valid + "=",
		"standard alphabet":      strings.NewReplacer("-", "+", "_", "/").Replace(valid + "-_"),
		"line break":             valid[:10] + "\n" + valid[10:],
		"trailing bits set":      valid[:len(valid)-1] + "B",
		"truncated":              enc(raw[:len(raw)-1]),
		"extra byte":             enc(append(append([]byte(nil), raw...), 0)),
		"version 0":              with(0, 0),
		"version 2":              with(0, 2),
		"unknown stream kind":    with(1, 'x'),
		"room name length zero":  with(2, 0),
		"room name too long":     enc(append([]byte{1, 'r', 65}, make([]byte, 65+24)...)),
		"room name upper-case":   enc(upper),
		"room name invalid":      with(3, ' '),
		"seq beyond int64":       enc(maxSeq),
		"far too long":           strings.Repeat("A", 1000),
		"conversation truncated": enc([]byte{1, 'c', 1, 2, 3}),
		"nil conversation":       enc(append([]byte{1, 'c'}, make([]byte, 16+16+8)...)),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			if c, err := ParseCursor(s); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseCursor(%q) = %+v, %v; want ErrInvalid", s, c, err)
			}
		})
	}
}

// FuzzParseCursor: whatever ParseCursor accepts is a cursor that encodes
// back to exactly the same string (one string per cursor).
func FuzzParseCursor(f *testing.F) {
	for _, c := range validCursors {
		s, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Add("")
	f.Add("AXI")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		again, err := c.Encode()
		if err != nil || again != s {
			t.Fatalf("ParseCursor(%q) = %+v, which encodes as %q, %v", s, c, again, err)
		}
		if _, err := checkStream(c.Stream); err != nil || c.Position.Seq < 0 {
			t.Fatalf("ParseCursor(%q) accepted %+v", s, c)
		}
	})
}

func TestNewKeyring(t *testing.T) {
	k1, k2 := testStorageKey(1), testStorageKey(2)
	kr, err := NewKeyring(map[uint32][]byte{1: k1, 2: k2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if id, key := kr.Current(); id != 2 || string(key) != string(k2) {
		t.Errorf("Current = %d, %x", id, key)
	}
	k1[0] ^= 0xff // the keyring holds a copy
	if key, err := kr.Key(1); err != nil || string(key) != string(testStorageKey(1)) {
		t.Errorf("Key(1) = %x, %v", key, err)
	}
	if _, err := kr.Key(3); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(3): %v, want ErrUnknownKey", err)
	}
	for name, c := range map[string]struct {
		keys    map[uint32][]byte
		current uint32
	}{
		"current missing": {map[uint32][]byte{1: k2}, 2},
		"id 0":            {map[uint32][]byte{0: k2, 1: k2}, 1},
		"short key":       {map[uint32][]byte{1: k2[:16]}, 1},
		"empty":           {nil, 1},
	} {
		if _, err := NewKeyring(c.keys, c.current); err == nil {
			t.Errorf("%s: NewKeyring succeeded", name)
		}
	}
}

func TestStreamNames(t *testing.T) {
	cases := []struct{ in, want string }{
		{"room:lobby", "room:lobby"},
		{"room:Lobby", "room:lobby"},
		{"conv:" + strings.ToUpper(testConv.String()), ConversationStream(testConv)},
		{"room:", ""},
		{"ROOM:lobby", ""},
		{"conv:{" + testConv.String() + "}", ""},
		{"conv:urn:uuid:" + testConv.String(), ""},
		{"conv:" + uuid.Nil.String(), ""},
		{"conv:" + testConv.String() + " ", ""},
	}
	for _, c := range cases {
		got, err := checkStream(c.in)
		if c.want == "" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("checkStream(%q) = %q, %v; want ErrInvalid", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("checkStream(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
