package e2e

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The world of the tests and golden vectors: one conversation between
// alice (devices alice-1, alice-2) and bob (bob-1, bob-2), two key
// versions, a few records, and the failure cases built from them. With a
// fixed random source (cryptotest.SetGlobalRandom, as the golden test
// uses under -update) it is reproducible; without, only the RSA parts
// differ.

// Fixed inputs of the world.
var (
	secretV1  = seqBytes(0x10, ConversationKeySize)
	secretV2  = seqBytes(0x30, ConversationKeySize)
	createdV1 = time.UnixMilli(1767225600000) // 2026-01-01T00:00:00Z
	createdV2 = time.UnixMilli(1767312000000) // 2026-01-02T00:00:00Z
)

func seqBytes(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// envelopeSpec describes a valid envelope of the world.
type envelopeSpec struct {
	name       string
	creator    string
	version    uint32
	suite      Suite
	created    time.Time
	secret     []byte
	recipients []string
}

var envelopeSpecs = []envelopeSpec{
	{"env-v1-gcm", "alice-1", 1, SuiteGCM, createdV1, secretV1, []string{"alice-1", "alice-2", "bob-1", "bob-2"}},
	// Key version 2 after alice removed alice-2: it is not wrapped to it.
	{"env-v2-cbc", "bob-1", 2, SuiteCBC, createdV2, secretV2, []string{"alice-1", "bob-1", "bob-2"}},
}

// recordSpec describes a valid record of the world.
type recordSpec struct {
	name    string
	env     string
	sender  string
	counter uint64
	id      uuid.UUID
	ts      int64
	iv      []byte
	text    string
}

var recordSpecs = []recordSpec{
	{"rec-1", "env-v1-gcm", "alice-1", 1, uuid.MustParse("00000000-0000-4000-8000-00000000e001"), 1767225601000, seqBytes(0xa0, 12), "Hello Bob! 👋"},
	{"rec-2", "env-v1-gcm", "alice-1", 2, uuid.MustParse("00000000-0000-4000-8000-00000000e002"), 1767225602000, seqBytes(0xb0, 12), "second message"},
	{"rec-3", "env-v1-gcm", "bob-2", 1, uuid.MustParse("00000000-0000-4000-8000-00000000e003"), 1767225603000, seqBytes(0xc0, 12), "héllo — ✓ from bob's second device"},
	// Exactly one block of text: CBC pads it with a full block.
	{"rec-4", "env-v2-cbc", "bob-1", 1, uuid.MustParse("00000000-0000-4000-8000-00000000e004"), 1767312001000, seqBytes(0xd0, 16), "sixteen bytes!!!"},
	{"rec-5", "env-v2-cbc", "alice-1", 1, uuid.MustParse("00000000-0000-4000-8000-00000000e005"), 1767312002000, seqBytes(0xe0, 16), "after rotation"},
}

// world holds the encoded valid envelopes and records, and the keys their
// creators got.
type world struct {
	envelopes map[string][]byte
	keys      map[string]*ConversationKey
	records   map[string][]byte
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{envelopes: map[string][]byte{}, keys: map[string]*ConversationKey{}, records: map[string][]byte{}}
	for _, s := range envelopeSpecs {
		data, key, err := newKeyEnvelope(dev(t, s.creator).local, EnvelopeParams{
			Conversation: testConversation,
			KeyVersion:   s.version,
			Suite:        s.suite,
			Created:      s.created,
			Devices:      publics(t, s.recipients...),
		}, s.secret)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		w.envelopes[s.name], w.keys[s.name] = data, key
	}
	for _, s := range recordSpecs {
		from := dev(t, s.sender).local
		data, err := seal(w.keys[s.env], from, Outgoing{
			Recipient: w.keys[s.env].Peer(from.User),
			MessageID: s.id,
			Counter:   s.counter,
			Time:      time.UnixMilli(s.ts),
			Text:      s.text,
		}, s.iv)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		w.records[s.name] = data
	}
	return w
}

// envelope parses a valid envelope of the world.
func (w *world) envelope(t testing.TB, name string) *KeyEnvelope {
	t.Helper()
	e, err := ParseKeyEnvelope(w.envelopes[name])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// record parses a valid record of the world.
func (w *world) record(t testing.TB, name string) *Record {
	t.Helper()
	r, err := ParseRecord(w.records[name])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// envWith returns env-v1-gcm changed by mut, signed again by signer
// (a test device name) or, when signer is "", with its old signature.
func (w *world) envWith(t testing.TB, mut func(*KeyEnvelope), signer string) []byte {
	t.Helper()
	return w.envWithFrom(t, "env-v1-gcm", mut, signer)
}

func (w *world) envWithFrom(t testing.TB, name string, mut func(*KeyEnvelope), signer string) []byte {
	t.Helper()
	e := w.envelope(t, name)
	mut(e)
	if signer != "" {
		body, err := e.signedPart()
		if err != nil {
			t.Fatal(err)
		}
		if e.Signature, err = sign(dev(t, signer).local.Signing, ContextKeyEnvelope, body); err != nil {
			t.Fatal(err)
		}
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recWith returns record name changed by mut, signed again by signer or,
// when signer is "", with its old signature.
func (w *world) recWith(t testing.TB, name string, mut func(*Record), signer string) []byte {
	t.Helper()
	r := w.record(t, name)
	mut(r)
	return resignRecord(t, r, signer)
}

func resignRecord(t testing.TB, r *Record, signer string) []byte {
	t.Helper()
	if signer != "" {
		body, err := r.signedPart()
		if err != nil {
			t.Fatal(err)
		}
		if r.Signature, err = sign(dev(t, signer).local.Signing, ContextMessage, body); err != nil {
			t.Fatal(err)
		}
	}
	out, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sealRaw encrypts plaintext under key with header h and iv, bypassing
// every check of Seal, and signs it by signer.
func (w *world) sealRaw(t testing.TB, key *ConversationKey, h Header, iv, plaintext []byte, signer string) []byte {
	t.Helper()
	r := &Record{Header: h, IV: iv}
	ad, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r.Ciphertext = key.records.encrypt(h.Suite, ad, iv, plaintext)
	return resignRecord(t, r, signer)
}

// wrapTo wraps payload to a device's encryption key with label.
func wrapTo(t testing.TB, device string, payload []byte, label string) []byte {
	t.Helper()
	out, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &dev(t, device).local.Encryption.PublicKey, payload, []byte(label))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stanzaIndex returns the index of device's stanza in e.
func stanzaIndex(t testing.TB, e *KeyEnvelope, device string) int {
	t.Helper()
	r := dev(t, device).local.Ref()
	for i, st := range e.Stanzas {
		if st.ref() == r {
			return i
		}
	}
	t.Fatalf("no stanza for %s", device)
	return -1
}

// failureCase is one input that must fail with one error.
type failureCase struct {
	name   string
	kind   string // "key_envelope" or "record"
	opener string
	prior  []string // records the opener accepts first, with the same guard
	data   []byte
	want   error
	note   string
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 0x01
	return b
}

// failureCases returns every failure case of the world. Each changes one
// thing in a valid envelope or record; "re-signed" means the creator or
// sender signed the changed bytes again, as a malicious or buggy device
// could, so the check after the signature is what must catch it.
func failureCases(t testing.TB, w *world) []failureCase {
	t.Helper()
	env := w.envelopes["env-v1-gcm"]
	rec1 := w.records["rec-1"]
	key1, key2 := w.keys["env-v1-gcm"], w.keys["env-v2-cbc"]
	var cs []failureCase
	addEnv := func(name, note string, data []byte, want error) {
		cs = append(cs, failureCase{name: name, kind: "key_envelope", opener: "bob-1", data: data, want: want, note: note})
	}
	addRec := func(name, note string, data []byte, want error, prior ...string) {
		cs = append(cs, failureCase{name: name, kind: "record", opener: "bob-1", prior: prior, data: data, want: want, note: note})
	}

	// Key envelope: structure, before any RSA operation.
	addEnv("env-empty", "no bytes", []byte{}, ErrMalformed)
	addEnv("env-truncated", "env-v1-gcm without its last byte", env[:len(env)-1], ErrMalformed)
	addEnv("env-trailing-byte", "env-v1-gcm with one more byte (0x00)", append(bytes.Clone(env), 0), ErrMalformed)
	addEnv("env-format-2", "format version byte 2", append([]byte{2}, env[1:]...), ErrUnsupportedFormat)
	addEnv("env-suite-3", "suite 0x0003, signed", w.envWith(t, func(e *KeyEnvelope) { e.Suite = 3 }, "alice-1"), ErrUnsupportedSuite)
	addEnv("env-key-version-0", "key version 0, re-signed", w.envWith(t, func(e *KeyEnvelope) { e.KeyVersion = 0 }, "alice-1"), ErrMalformed)
	addEnv("env-stanzas-reordered", "stanzas 0 and 1 swapped, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas[0], e.Stanzas[1] = e.Stanzas[1], e.Stanzas[0]
	}, "alice-1"), ErrMalformed)
	addEnv("env-stanza-duplicated", "bob-1's stanza twice, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		i := stanzaIndex(t, e, "bob-1")
		e.Stanzas = slices.Insert(e.Stanzas, i, e.Stanzas[i])
	}, "alice-1"), ErrMalformed)
	addEnv("env-65-stanzas", "65 stanzas (61 made-up bob devices added, in order), re-signed", w.envWith(t, func(e *KeyEnvelope) {
		for i := range MaxRecipients + 1 - len(e.Stanzas) {
			e.Stanzas = append(e.Stanzas, Stanza{User: "bob", Device: uuid.UUID{0: 0xff, 15: byte(i)}, Wrapped: e.Stanzas[len(e.Stanzas)-1].Wrapped})
		}
	}, "alice-1"), ErrTooManyRecipients)
	addEnv("env-no-stanza", "stanza count 0, re-signed", w.envWith(t, func(e *KeyEnvelope) { e.Stanzas = nil }, "alice-1"), ErrMalformed)
	addEnv("env-creator-without-stanza", "alice-1's own stanza removed, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas = slices.Delete(e.Stanzas, 0, 1)
	}, "alice-1"), ErrMalformed)
	addEnv("env-one-user", "only alice's stanzas, re-signed", w.envWith(t, func(e *KeyEnvelope) { e.Stanzas = e.Stanzas[:2] }, "alice-1"), ErrMalformed)
	addEnv("env-three-users", "a stanza for carol-1 added, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas = append(e.Stanzas, Stanza{User: "carol", Device: dev(t, "carol-1").local.ID, Wrapped: wrapTo(t, "carol-1", secretV1, LabelConversationKey)})
	}, "alice-1"), ErrMalformed)
	addEnv("env-wrapped-255-bytes", "bob-1's wrapped key one byte short, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		i := stanzaIndex(t, e, "bob-1")
		e.Stanzas[i].Wrapped = e.Stanzas[i].Wrapped[:255]
	}, "alice-1"), ErrMalformed)
	addEnv("env-user-name-invalid", "creator user \"Alice\" (upper case), re-signed", w.envWith(t, func(e *KeyEnvelope) { e.Creator.User = "Alice" }, "alice-1"), ErrMalformed)
	addEnv("env-signature-short", "signature of 255 bytes", w.envWith(t, func(e *KeyEnvelope) { e.Signature = e.Signature[:255] }, ""), ErrMalformed)

	// Key envelope: each field changed, not re-signed.
	for _, f := range []struct {
		name string
		mut  func(*KeyEnvelope)
	}{
		{"conversation", func(e *KeyEnvelope) { e.Conversation = otherConversation }},
		{"key-version", func(e *KeyEnvelope) { e.KeyVersion = 2 }},
		{"creator-device", func(e *KeyEnvelope) { e.Creator = dev(t, "alice-2").local.Ref() }},
		{"created", func(e *KeyEnvelope) { e.Created++ }},
		{"suite", func(e *KeyEnvelope) { e.Suite = SuiteCBC }},
		{"device-set-digest", func(e *KeyEnvelope) { e.DeviceSetDigest[0] ^= 1 }},
		{"other-stanza", func(e *KeyEnvelope) { e.Stanzas[stanzaIndex(t, e, "alice-2")].Wrapped[7] ^= 1 }},
		{"own-stanza", func(e *KeyEnvelope) { e.Stanzas[stanzaIndex(t, e, "bob-1")].Wrapped[7] ^= 1 }},
		{"stanza-device-id", func(e *KeyEnvelope) { e.Stanzas[stanzaIndex(t, e, "bob-2")].Device[15] ^= 0x10 }},
		{"signature", func(e *KeyEnvelope) { e.Signature[3] ^= 1 }},
	} {
		addEnv("env-tampered-"+f.name, f.name+" changed, not re-signed", w.envWith(t, f.mut, ""), ErrBadSignature)
	}
	addEnv("env-signed-by-other-device", "names alice-1 as creator, signed by alice-2", w.envWith(t, func(*KeyEnvelope) {}, "alice-2"), ErrBadSignature)

	// Key envelope: authentic (re-signed) but wrong for the opener.
	addEnv("env-wrong-conversation", "conversation id of another conversation, re-signed", w.envWith(t, func(e *KeyEnvelope) { e.Conversation = otherConversation }, "alice-1"), ErrWrongConversation)
	{
		data, _, err := newKeyEnvelope(dev(t, "alice-1").local, EnvelopeParams{
			Conversation: testConversation, KeyVersion: 1, Suite: SuiteGCM, Created: createdV1,
			Devices: publics(t, "alice-1", "carol-1"),
		}, secretV1)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, failureCase{name: "env-wrong-pair", kind: "key_envelope", opener: "alice-1", data: data, want: ErrWrongConversation,
			note: "alice-1's envelope for alice and carol under this conversation's id, opened by alice-1 as the conversation with bob"})
	}
	cs = append(cs, failureCase{name: "env-removed-device", kind: "key_envelope", opener: "alice-2", data: w.envelopes["env-v2-cbc"], want: ErrNotARecipient,
		note: "env-v2-cbc opened by alice-2, which it is not wrapped to"})
	addEnv("env-wrong-label", "bob-1's stanza wrapped with the label \"messenger v1 session secret\", re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas[stanzaIndex(t, e, "bob-1")].Wrapped = wrapTo(t, "bob-1", secretV1, "messenger v1 session secret")
	}, "alice-1"), ErrUnwrap)
	addEnv("env-wrapped-31-bytes", "bob-1's stanza wraps 31 bytes, re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas[stanzaIndex(t, e, "bob-1")].Wrapped = wrapTo(t, "bob-1", secretV1[:31], LabelConversationKey)
	}, "alice-1"), ErrUnwrap)
	addEnv("env-wrapped-to-other-key", "bob-1's stanza replaced by a wrapping to alice-2's key (also 2048 bits), re-signed", w.envWith(t, func(e *KeyEnvelope) {
		e.Stanzas[stanzaIndex(t, e, "bob-1")].Wrapped = wrapTo(t, "alice-2", secretV1, LabelConversationKey)
	}, "alice-1"), ErrUnwrap)

	// Record: structure.
	addRec("rec-empty", "no bytes", []byte{}, ErrMalformed)
	addRec("rec-truncated", "rec-1 without its last byte", rec1[:len(rec1)-1], ErrMalformed)
	addRec("rec-trailing-byte", "rec-1 with one more byte (0x00)", append(bytes.Clone(rec1), 0), ErrMalformed)
	addRec("rec-format-2", "format version byte 2", append([]byte{2}, rec1[1:]...), ErrUnsupportedFormat)
	addRec("rec-suite-3", "suite 0x0003, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Suite = 3 }, "alice-1"), ErrUnsupportedSuite)
	addRec("rec-suite-cbc", "suite changed to CBC: the 12-byte IV is then the wrong length", w.recWith(t, "rec-1", func(r *Record) { r.Suite = SuiteCBC }, ""), ErrMalformed)
	addRec("rec-iv-11-bytes", "IV of 11 bytes, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.IV = r.IV[:11] }, "alice-1"), ErrMalformed)
	addRec("rec-counter-0", "counter 0, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Counter = 0 }, "alice-1"), ErrMalformed)
	addRec("rec-key-version-0", "key version 0, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.KeyVersion = 0 }, "alice-1"), ErrMalformed)
	addRec("rec-to-self", "recipient alice (the sender), re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Recipient = "alice" }, "alice-1"), ErrMalformed)
	addRec("rec-ciphertext-16-bytes", "GCM ciphertext shorter than a tag plus one byte, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Ciphertext = r.Ciphertext[:16] }, "alice-1"), ErrMalformed)
	addRec("rec-cbc-ciphertext-not-blocks", "CBC ciphertext one byte short of whole blocks, re-signed", w.recWith(t, "rec-4", func(r *Record) {
		r.Ciphertext = r.Ciphertext[1:]
	}, "bob-1"), ErrMalformed)
	addRec("rec-signature-short", "signature of 255 bytes", w.recWith(t, "rec-1", func(r *Record) { r.Signature = r.Signature[:255] }, ""), ErrMalformed)

	// Record: each field changed, not re-signed.
	for _, f := range []struct {
		name string
		mut  func(*Record)
	}{
		{"conversation", func(r *Record) { r.Conversation = otherConversation }},
		{"key-version", func(r *Record) { r.KeyVersion = 2 }},
		{"sender-device", func(r *Record) { r.SenderDevice = dev(t, "alice-2").local.ID }},
		{"recipient", func(r *Record) { r.Recipient = "carol" }},
		{"message-id", func(r *Record) { r.MessageID[0] ^= 1 }},
		{"counter", func(r *Record) { r.Counter = 7 }},
		{"timestamp", func(r *Record) { r.Timestamp++ }},
		{"iv", func(r *Record) { r.IV[0] ^= 1 }},
		{"ciphertext", func(r *Record) { r.Ciphertext[0] ^= 1 }},
		{"tag", func(r *Record) { r.Ciphertext[len(r.Ciphertext)-1] ^= 1 }},
		{"signature", func(r *Record) { r.Signature[3] ^= 1 }},
	} {
		addRec("rec-tampered-"+f.name, f.name+" of rec-1 changed, not re-signed", w.recWith(t, "rec-1", f.mut, ""), ErrBadSignature)
	}
	addRec("rec-signed-by-other-device", "rec-1 (sender alice-1) signed by alice-2", w.recWith(t, "rec-1", func(*Record) {}, "alice-2"), ErrBadSignature)

	// Record: authentic (re-signed by the sender) but wrong.
	addRec("rec-wrong-conversation", "conversation id of another conversation, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Conversation = otherConversation }, "alice-1"), ErrWrongConversation)
	addRec("rec-unknown-key-version", "key version 9, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.KeyVersion = 9 }, "alice-1"), ErrUnknownKeyVersion)
	addRec("rec-wrong-recipient", "recipient carol, re-signed", w.recWith(t, "rec-1", func(r *Record) { r.Recipient = "carol" }, "alice-1"), ErrNotARecipient)
	{
		h := w.record(t, "rec-5").Header
		h.Sender, h.SenderDevice = "alice", dev(t, "alice-2").local.ID
		addRec("rec-removed-device-sender", "sealed under key version 2 and signed by alice-2, which key version 2 is not wrapped to",
			w.sealRaw(t, key2, h, seqBytes(0xe0, 16), []byte("from a removed device"), "alice-2"), ErrUnknownDevice)
	}
	{
		h := w.record(t, "rec-5").Header
		h.Suite = SuiteGCM
		r := &Record{Header: h, IV: seqBytes(0xe0, 12), Ciphertext: seqBytes(0x00, 32)}
		addRec("rec-suite-mismatch", "a record with suite GCM (12-byte IV, 32 bytes of ciphertext) under key version 2, whose suite is CBC, signed by alice-1",
			resignRecord(t, r, "alice-1"), ErrSuiteMismatch)
	}
	for _, f := range []struct {
		name string
		mut  func(*Record)
	}{
		{"message-id", func(r *Record) { r.MessageID[0] ^= 1 }},
		{"counter", func(r *Record) { r.Counter = 7 }},
		{"timestamp", func(r *Record) { r.Timestamp++ }},
		{"iv", func(r *Record) { r.IV[0] ^= 1 }},
		{"ciphertext", func(r *Record) { r.Ciphertext[0] ^= 1 }},
		{"tag", func(r *Record) { r.Ciphertext[len(r.Ciphertext)-1] ^= 1 }},
	} {
		addRec("rec-resigned-"+f.name, f.name+" of rec-1 changed and re-signed by alice-1: the GCM additional data or tag no longer match",
			w.recWith(t, "rec-1", f.mut, "alice-1"), ErrBadAD)
	}
	addRec("rec-cbc-resigned-mac", "the HMAC of rec-4 changed, re-signed by bob-1", w.recWith(t, "rec-4", func(r *Record) {
		r.Ciphertext[len(r.Ciphertext)-1] ^= 1
	}, "bob-1"), ErrBadAD)
	addRec("rec-cbc-resigned-timestamp", "timestamp of rec-4 changed, re-signed by bob-1: the HMAC no longer matches", w.recWith(t, "rec-4", func(r *Record) {
		r.Timestamp++
	}, "bob-1"), ErrBadAD)
	{
		h := w.record(t, "rec-1").Header
		h.MessageID[15] = 0xf1
		addRec("rec-not-utf8", "GCM text 0xff 0xfe, signed by alice-1", w.sealRaw(t, key1, h, seqBytes(0xa0, 12), []byte{0xff, 0xfe}, "alice-1"), ErrBadPlaintext)
	}
	{
		h := w.record(t, "rec-4").Header
		h.MessageID[15] = 0xf2
		addRec("rec-cbc-empty-text", "CBC empty text (one block of padding), signed by bob-1", w.sealRaw(t, key2, h, seqBytes(0xd0, 16), nil, "bob-1"), ErrBadPlaintext)
	}
	{
		// A CBC record whose padding is bad but whose HMAC is right.
		h := w.record(t, "rec-4").Header
		iv := seqBytes(0xd0, 16)
		body := bytes.Repeat([]byte{'x'}, 16)
		body[15] = 0 // padding byte 0
		cipherText := make([]byte, 16)
		copyCBC(key2, iv, cipherText, body)
		ad, _ := h.Marshal()
		r := &Record{Header: h, IV: iv, Ciphertext: append(cipherText, key2.records.mac(ad, iv, cipherText)...)}
		addRec("rec-cbc-bad-padding", "CBC record with padding byte 0x00 and a valid HMAC, signed by bob-1", resignRecord(t, r, "bob-1"), ErrBadPlaintext)
	}

	// Record: replays, with a guard that accepted the prior records.
	addRec("rec-replay", "rec-1 again after rec-1", rec1, ErrReplay, "rec-1")
	addRec("rec-replay-new-counter", "rec-1's message id with counter 3, re-signed, after rec-1", w.recWith(t, "rec-1", func(r *Record) {
		r.Counter = 3
		r.Ciphertext = key1.records.encrypt(SuiteGCM, mustHeader(t, r.Header), r.IV, []byte("Hello Bob! 👋"))
	}, "alice-1"), ErrReplay, "rec-1")
	addRec("rec-counter-backwards", "rec-1 (counter 1) after rec-2 (counter 2) of the same device", rec1, ErrStaleCounter, "rec-2")
	addRec("rec-counter-repeated", "a new message id with rec-2's counter 2, after rec-2", w.recWith(t, "rec-2", func(r *Record) {
		r.MessageID[15] = 0xf3
		r.Ciphertext = key1.records.encrypt(SuiteGCM, mustHeader(t, r.Header), r.IV, []byte("same counter"))
	}, "alice-1"), ErrStaleCounter, "rec-2")
	return cs
}

func mustHeader(t testing.TB, h Header) []byte {
	t.Helper()
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyCBC encrypts src into dst with key's AES-CBC key, no padding.
func copyCBC(key *ConversationKey, iv, dst, src []byte) {
	cipher.NewCBCEncrypter(key.records.block, iv).CryptBlocks(dst, src)
}

// vectorSet is what a check of the vectors needs: the conversation, the
// valid envelopes in order and the valid records by name. It is built
// from a world or read from the golden file.
type vectorSet struct {
	envelopes [][]byte
	records   map[string][]byte
}

func (w *world) vectorSet() *vectorSet {
	v := &vectorSet{records: w.records}
	for _, s := range envelopeSpecs {
		v.envelopes = append(v.envelopes, w.envelopes[s.name])
	}
	return v
}

// peerOf returns the other user of the conversation.
func peerOf(user string) string {
	if user == "alice" {
		return "bob"
	}
	return "alice"
}

// openEnvelope opens data as opener would: parse, look the creator up,
// open for testConversation with the opener's peer.
func (v *vectorSet) openEnvelope(t testing.TB, opener string, data []byte) (*ConversationKey, error) {
	t.Helper()
	e, err := ParseKeyEnvelope(data)
	if err != nil {
		return nil, err
	}
	creator, ok := deviceByRef(t, e.Creator)
	if !ok { // as a client whose directory does not know the device
		return nil, fmt.Errorf("envelope names creator %v, which is no test device", e.Creator)
	}
	me := dev(t, opener).local
	return e.Open(testConversation, peerOf(me.User), creator.public, me)
}

// keyring opens every valid envelope opener can open.
func (v *vectorSet) keyring(t testing.TB, opener string) *Keyring {
	t.Helper()
	ring := NewKeyring(testConversation)
	for _, data := range v.envelopes {
		k, err := v.openEnvelope(t, opener, data)
		if err != nil {
			if ErrorName(err) == "ErrNotARecipient" {
				continue
			}
			t.Fatalf("%s opening a valid envelope: %v", opener, err)
		}
		if err := ring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	return ring
}

// openRecord opens data as opener would, with a fresh guard that has
// accepted the prior records first.
func (v *vectorSet) openRecord(t testing.TB, opener string, prior []string, data []byte) (*Message, error) {
	t.Helper()
	ring := v.keyring(t, opener)
	guard := &ReplayGuard{}
	open := func(data []byte) (*Message, error) {
		r, err := ParseRecord(data)
		if err != nil {
			return nil, err
		}
		sender, ok := deviceByRef(t, r.Sending())
		if !ok { // as a client whose directory does not know the device
			return nil, fmt.Errorf("record names sender %v, which is no test device", r.Sending())
		}
		return Open(ring, r, sender.public, guard)
	}
	for _, p := range prior {
		if _, err := open(v.records[p]); err != nil {
			t.Fatalf("prior record %s: %v", p, err)
		}
	}
	return open(data)
}

// run checks one failure case and returns its error.
func (v *vectorSet) run(t testing.TB, c failureCase) error {
	t.Helper()
	if c.kind == "key_envelope" {
		_, err := v.openEnvelope(t, c.opener, c.data)
		return err
	}
	_, err := v.openRecord(t, c.opener, c.prior, c.data)
	return err
}

// TestFailureCases runs every failure case and names the error each gets.
func TestFailureCases(t *testing.T) {
	w := newWorld(t)
	v := w.vectorSet()
	names := map[string]bool{}
	for _, c := range failureCases(t, w) {
		if names[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, v.run(t, c), c.want)
		})
	}
}

// TestErrorName: every sentinel has its name, found through wrapping.
func TestErrorName(t *testing.T) {
	for sentinel, name := range errorNames {
		if got := ErrorName(fmt.Errorf("a: %w", fmt.Errorf("b: %w", sentinel))); got != name {
			t.Errorf("ErrorName of wrapped %v = %q, want %q", sentinel, got, name)
		}
	}
	if ErrorName(nil) != "" || ErrorName(errors.New("other")) != "" {
		t.Fatal("a name for no sentinel")
	}
}
