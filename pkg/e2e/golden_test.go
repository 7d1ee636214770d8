package e2e

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"testing/cryptotest"

	"github.com/google/uuid"
)

// The golden vectors: testdata/golden/e2e_vectors.json holds a complete
// conversation (devices, fingerprints, a safety number, two key
// envelopes, five records) and every failure case with the error it must
// give. docs/e2e.md (§9) explains how another implementation checks itself
// against it. TestGolden reads the file back and checks it two ways: the
// deterministic values are recomputed from the documented construction
// with the standard library alone (not this package's code), and every
// input is opened through the package by every device, with the expected
// outcome. -update regenerates the file with a fixed random source (the
// same Go version makes the same bytes); the keys in testdata/keys are
// never regenerated.

const goldenFile = "e2e_vectors.json"

type goldenVectors struct {
	Description  string            `json:"description"`
	Regenerate   string            `json:"regenerate"`
	Conversation uuid.UUID         `json:"conversation"`
	Users        [2]string         `json:"users"`
	Constants    goldenConstants   `json:"constants"`
	Devices      []goldenDevice    `json:"devices"`
	UserFPs      []goldenUserFP    `json:"user_fingerprints"`
	DeviceSets   []goldenDeviceSet `json:"device_sets"`
	Safety       goldenSafety      `json:"safety_number"`
	Envelopes    []goldenEnvelope  `json:"envelopes"`
	Records      []goldenRecord    `json:"records"`
	Failures     []goldenFailure   `json:"failures"`
}

type goldenConstants struct {
	FormatVersion        int    `json:"format_version"`
	MaxRecipients        int    `json:"max_recipients"`
	MaxPlaintext         int    `json:"max_plaintext"`
	LabelConversationKey string `json:"label_conversation_key"`
	ContextKeyEnvelope   string `json:"context_key_envelope"`
	ContextMessage       string `json:"context_message"`
	RecordKeySalt        string `json:"record_key_salt"`
	InfoGCMKey           string `json:"info_gcm_key"`
	InfoCBCEncKey        string `json:"info_cbc_enc_key"`
	InfoCBCMACKey        string `json:"info_cbc_mac_key"`
	ContextDevice        string `json:"context_device"`
	ContextUser          string `json:"context_user"`
	ContextDeviceSet     string `json:"context_device_set"`
	ContextSafetyNumber  string `json:"context_safety_number"`
}

// hexData is bytes as lower-case hex in JSON.
type hexData []byte

func (h hexData) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexData) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type goldenDevice struct {
	Name              string    `json:"name"`
	User              string    `json:"user"`
	ID                uuid.UUID `json:"id"`
	SigningPrivate    string    `json:"signing_private_key_file"`
	EncryptionPrivate string    `json:"encryption_private_key_file"`
	Signing           hexData   `json:"signing_public_key"`
	Encryption        hexData   `json:"encryption_public_key"`
	FingerprintInput  hexData   `json:"fingerprint_input"`
	Fingerprint       hexData   `json:"fingerprint"`
}

type goldenUserFP struct {
	User        string   `json:"user"`
	Devices     []string `json:"devices"`
	Input       hexData  `json:"input"`
	Fingerprint hexData  `json:"fingerprint"`
}

type goldenDeviceSet struct {
	Devices []string `json:"devices"`
	Input   hexData  `json:"input"`
	Digest  hexData  `json:"digest"`
}

type goldenSafety struct {
	UserFingerprints [2]hexData `json:"user_fingerprints"`
	Input            hexData    `json:"input"`
	SHA512           hexData    `json:"sha512"`
	Number           string     `json:"number"`
}

type goldenEnvelope struct {
	Name            string             `json:"name"`
	Creator         string             `json:"creator"`
	KeyVersion      uint32             `json:"key_version"`
	Suite           uint16             `json:"suite"`
	CreatedMS       uint64             `json:"created_ms"`
	Recipients      []string           `json:"recipients"`
	ConversationKey hexData            `json:"conversation_key"`
	DeviceSetDigest hexData            `json:"device_set_digest"`
	RecordKeyInfos  map[string]hexData `json:"record_key_infos"`
	RecordKeys      map[string]hexData `json:"record_keys"`
	SignedContent   hexData            `json:"signed_content"`
	Encoding        hexData            `json:"encoding"`
	Results         map[string]string  `json:"results"`
}

type goldenRecord struct {
	Name          string            `json:"name"`
	Envelope      string            `json:"envelope"`
	Sender        string            `json:"sender"`
	Recipient     string            `json:"recipient"`
	MessageID     uuid.UUID         `json:"message_id"`
	Counter       uint64            `json:"counter"`
	TimestampMS   uint64            `json:"timestamp_ms"`
	IV            hexData           `json:"iv"`
	Text          string            `json:"text"`
	Header        hexData           `json:"header"`
	Ciphertext    hexData           `json:"ciphertext"`
	SignedContent hexData           `json:"signed_content"`
	Encoding      hexData           `json:"encoding"`
	Results       map[string]string `json:"results"`
}

type goldenFailure struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	Opener   string   `json:"opener"`
	After    []string `json:"after,omitempty"`
	Note     string   `json:"note"`
	Encoding hexData  `json:"encoding"`
	Error    string   `json:"error"`
}

func goldenPath() string { return filepath.Join("testdata", "golden", goldenFile) }

// --- The documented constructions, written again with the standard
// library alone, as docs/e2e.md states them. ---

func docLen8(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }
func docLen16(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func docDeviceFPInput(user string, id uuid.UUID, signing, encryption []byte) []byte {
	out := []byte("messenger v1 device\x00")
	out = append(out, docLen8([]byte(user))...)
	out = append(out, id[:]...)
	out = append(out, docLen16(signing)...)
	return append(out, docLen16(encryption)...)
}

func docSorted(fps [][]byte) [][]byte {
	fps = slices.Clone(fps)
	slices.SortFunc(fps, bytes.Compare)
	return fps
}

func docUserFPInput(user string, deviceFPs [][]byte) []byte {
	out := []byte("messenger v1 user\x00")
	out = append(out, docLen8([]byte(user))...)
	out = append(out, byte(len(deviceFPs)))
	for _, fp := range docSorted(deviceFPs) {
		out = append(out, fp...)
	}
	return out
}

func docDeviceSetInput(userFPs [][]byte) []byte {
	return slices.Concat(append([][]byte{[]byte("messenger v1 device set\x00")}, docSorted(userFPs)...)...)
}

func docSafetyInput(userFPs [][]byte) []byte {
	return slices.Concat(append([][]byte{[]byte("messenger v1 safety number\x00")}, docSorted(userFPs)...)...)
}

func docSafetyDigits(h []byte) string {
	s := ""
	for i := range 12 {
		var v uint64
		for _, c := range h[5*i : 5*i+5] {
			v = v<<8 | uint64(c)
		}
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%05d", v%100000)
	}
	return s
}

func docSignedContent(context string, signedPart []byte) []byte {
	h := sha256.Sum256(signedPart)
	out := bytes.Repeat([]byte{0x20}, 64)
	out = append(out, context...)
	out = append(out, 0)
	return append(out, h[:]...)
}

func docRecordKeyInfo(label string, conv uuid.UUID, version uint32) []byte {
	out := append([]byte(label), 0)
	out = append(out, conv[:]...)
	return binary.BigEndian.AppendUint32(out, version)
}

func docRecordKey(t testing.TB, secret, info []byte) []byte {
	t.Helper()
	k, err := hkdf.Key(sha256.New, secret, []byte("messenger v1 e2e"), string(info), 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func docHeader(conv uuid.UUID, version uint32, sender string, senderDevice uuid.UUID, recipient string, id uuid.UUID, counter, ts uint64, suite uint16) []byte {
	out := []byte{1}
	out = append(out, conv[:]...)
	out = binary.BigEndian.AppendUint32(out, version)
	out = append(out, docLen8([]byte(sender))...)
	out = append(out, senderDevice[:]...)
	out = append(out, docLen8([]byte(recipient))...)
	out = append(out, id[:]...)
	out = binary.BigEndian.AppendUint64(out, counter)
	out = binary.BigEndian.AppendUint64(out, ts)
	return binary.BigEndian.AppendUint16(out, suite)
}

// docCiphertext seals text as docs/e2e.md §5.4 says.
func docCiphertext(t testing.TB, keys map[string]hexData, suite uint16, header, iv []byte, text string) []byte {
	t.Helper()
	if suite == 1 {
		b, _ := aes.NewCipher(keys["gcm_key"])
		g, _ := cipher.NewGCM(b)
		return g.Seal(nil, iv, []byte(text), header)
	}
	pad := 16 - len(text)%16
	body := append([]byte(text), bytes.Repeat([]byte{byte(pad)}, pad)...)
	b, _ := aes.NewCipher(keys["cbc_enc_key"])
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(body, body)
	m := hmac.New(sha256.New, keys["cbc_mac_key"])
	m.Write(header)
	m.Write(iv)
	m.Write(body)
	return m.Sum(body)
}

// docVerify checks an RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) signature
// over signedContent.
func docVerify(pub *rsa.PublicKey, signedContent, sig []byte) error {
	h := sha256.Sum256(signedContent)
	return rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: 32})
}

// --- Building the file. ---

var openers = []string{"alice-1", "alice-2", "bob-1", "bob-2"}

func resultName(err error) string {
	if err == nil {
		return "ok"
	}
	if n := ErrorName(err); n != "" {
		return n
	}
	return "error: " + err.Error()
}

func buildGolden(t *testing.T) goldenVectors {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 0x6532650a)
	w := newWorld(t)
	v := w.vectorSet()
	g := goldenVectors{
		Description: "Golden vectors of the end-to-end envelope (docs/e2e.md). Byte strings are hex. " +
			"Private keys are PKCS#8 PEM files under pkg/e2e/testdata/keys. Every envelope and record opens (or fails) " +
			"for each device as its results say; every failure fails with its error. docs/e2e.md §9 says how to check.",
		Regenerate:   "go test ./pkg/e2e -run TestGolden -update (only for an intended format change; then update docs/e2e.md)",
		Conversation: testConversation,
		Users:        [2]string{"alice", "bob"},
		Constants: goldenConstants{
			FormatVersion: FormatVersion, MaxRecipients: MaxRecipients, MaxPlaintext: MaxPlaintext,
			LabelConversationKey: LabelConversationKey, ContextKeyEnvelope: ContextKeyEnvelope, ContextMessage: ContextMessage,
			RecordKeySalt: RecordKeySalt, InfoGCMKey: InfoGCMKey, InfoCBCEncKey: InfoCBCEncKey, InfoCBCMACKey: InfoCBCMACKey,
			ContextDevice: contextDevice, ContextUser: contextUser, ContextDeviceSet: contextDeviceSet, ContextSafetyNumber: ContextSafetyNumber,
		},
	}
	for _, s := range deviceSpecs {
		d := dev(t, s.name).public
		fp := d.Fingerprint()
		g.Devices = append(g.Devices, goldenDevice{
			Name: s.name, User: s.user, ID: s.id,
			SigningPrivate:    filepath.ToSlash(keyPath(s.name, "signing")),
			EncryptionPrivate: filepath.ToSlash(keyPath(s.name, "encryption")),
			Signing:           d.Signing, Encryption: d.Encryption,
			FingerprintInput: docDeviceFPInput(d.User, d.ID, d.Signing, d.Encryption),
			Fingerprint:      fp[:],
		})
	}
	userFP := func(user string, names ...string) []byte {
		fp, err := UserFingerprint(user, publics(t, names...))
		if err != nil {
			t.Fatal(err)
		}
		var dfps [][]byte
		for _, n := range names {
			f := dev(t, n).public.Fingerprint()
			dfps = append(dfps, f[:])
		}
		g.UserFPs = append(g.UserFPs, goldenUserFP{User: user, Devices: names, Input: docUserFPInput(user, dfps), Fingerprint: fp[:]})
		return fp[:]
	}
	fa, fb, fa1 := userFP("alice", "alice-1", "alice-2"), userFP("bob", "bob-1", "bob-2"), userFP("alice", "alice-1")
	for _, set := range []struct {
		names []string
		fps   [][]byte
	}{{allFour, [][]byte{fa, fb}}, {[]string{"alice-1", "bob-1", "bob-2"}, [][]byte{fa1, fb}}} {
		d, err := DeviceSetDigest(publics(t, set.names...))
		if err != nil {
			t.Fatal(err)
		}
		g.DeviceSets = append(g.DeviceSets, goldenDeviceSet{Devices: set.names, Input: docDeviceSetInput(set.fps), Digest: d[:]})
	}
	sn := NewSafetyNumber(Fingerprint(fa), Fingerprint(fb))
	in := docSafetyInput([][]byte{fa, fb})
	h := sha512.Sum512(in)
	g.Safety = goldenSafety{UserFingerprints: [2]hexData{fa, fb}, Input: in, SHA512: h[:], Number: sn.String()}

	for _, s := range envelopeSpecs {
		key := w.keys[s.name]
		e := w.envelope(t, s.name)
		body, _ := e.signedPart()
		ge := goldenEnvelope{
			Name: s.name, Creator: s.creator, KeyVersion: s.version, Suite: uint16(s.suite), CreatedMS: uint64(s.created.UnixMilli()),
			Recipients: s.recipients, ConversationKey: key.secret[:], DeviceSetDigest: e.DeviceSetDigest[:],
			RecordKeyInfos: map[string]hexData{}, RecordKeys: map[string]hexData{},
			SignedContent: docSignedContent(ContextKeyEnvelope, body), Encoding: w.envelopes[s.name], Results: map[string]string{},
		}
		labels := map[string]string{"gcm_key": InfoGCMKey}
		if s.suite == SuiteCBC {
			labels = map[string]string{"cbc_enc_key": InfoCBCEncKey, "cbc_mac_key": InfoCBCMACKey}
		}
		for name, label := range labels {
			ge.RecordKeyInfos[name] = recordKeyInfoBytes(label, testConversation, s.version)
			k, err := recordKey(key.secret[:], label, testConversation, s.version)
			if err != nil {
				t.Fatal(err)
			}
			ge.RecordKeys[name] = k
		}
		for _, o := range openers {
			_, err := v.openEnvelope(t, o, w.envelopes[s.name])
			ge.Results[o] = resultName(err)
		}
		g.Envelopes = append(g.Envelopes, ge)
	}
	for _, s := range recordSpecs {
		r := w.record(t, s.name)
		body, _ := r.signedPart()
		hdr, _ := r.Header.Marshal()
		gr := goldenRecord{
			Name: s.name, Envelope: s.env, Sender: s.sender, Recipient: r.Recipient, MessageID: s.id, Counter: s.counter,
			TimestampMS: uint64(s.ts), IV: s.iv, Text: s.text, Header: hdr, Ciphertext: r.Ciphertext,
			SignedContent: docSignedContent(ContextMessage, body), Encoding: w.records[s.name], Results: map[string]string{},
		}
		for _, o := range openers {
			_, err := v.openRecord(t, o, nil, w.records[s.name])
			gr.Results[o] = resultName(err)
		}
		g.Records = append(g.Records, gr)
	}
	for _, c := range failureCases(t, w) {
		g.Failures = append(g.Failures, goldenFailure{
			Name: c.name, Kind: c.kind, Opener: c.opener, After: c.prior, Note: c.note, Encoding: c.data, Error: errorNames[c.want],
		})
	}
	return g
}

func recordKeyInfoBytes(label string, conv uuid.UUID, version uint32) []byte {
	return []byte(recordKeyInfo(label, conv, version))
}

// --- Checking the file. ---

func TestGolden(t *testing.T) {
	if *update {
		g := buildGolden(t)
		data, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenPath()), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath(), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := readGolden(t)
	t.Run("devices", func(t *testing.T) { checkGoldenDevices(t, g) })
	t.Run("envelopes", func(t *testing.T) { checkGoldenEnvelopes(t, g) })
	t.Run("records", func(t *testing.T) { checkGoldenRecords(t, g) })
	t.Run("failures", func(t *testing.T) { checkGoldenFailures(t, g) })
}

func readGolden(t testing.TB) goldenVectors {
	t.Helper()
	data, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var g goldenVectors
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("%s: %v", goldenPath(), err)
	}
	return g
}

func goldenSet(g goldenVectors) *vectorSet {
	v := &vectorSet{records: map[string][]byte{}}
	for _, e := range g.Envelopes {
		v.envelopes = append(v.envelopes, e.Encoding)
	}
	for _, r := range g.Records {
		v.records[r.Name] = r.Encoding
	}
	return v
}

func checkGoldenDevices(t *testing.T, g goldenVectors) {
	if g.Conversation != testConversation || len(g.Devices) != len(deviceSpecs) {
		t.Fatal("the file's conversation or devices are not the tests'")
	}
	fpOf := map[string][]byte{}
	for _, gd := range g.Devices {
		d := dev(t, gd.Name).public
		if d.User != gd.User || d.ID != gd.ID || !bytes.Equal(d.Signing, gd.Signing) || !bytes.Equal(d.Encryption, gd.Encryption) {
			t.Fatalf("%s: public keys or id differ from %s", gd.Name, gd.SigningPrivate)
		}
		if !bytes.Equal(gd.FingerprintInput, docDeviceFPInput(gd.User, gd.ID, gd.Signing, gd.Encryption)) {
			t.Fatalf("%s: fingerprint input is not the documented encoding", gd.Name)
		}
		if h := sha256.Sum256(gd.FingerprintInput); !bytes.Equal(h[:], gd.Fingerprint) {
			t.Fatalf("%s: fingerprint is not SHA-256 of its input", gd.Name)
		}
		if fp := d.Fingerprint(); !bytes.Equal(fp[:], gd.Fingerprint) {
			t.Fatalf("%s: Device.Fingerprint changed", gd.Name)
		}
		fpOf[gd.Name] = gd.Fingerprint
	}
	userFP := map[string][]byte{}
	for _, u := range g.UserFPs {
		var dfps [][]byte
		for _, n := range u.Devices {
			dfps = append(dfps, fpOf[n])
		}
		if !bytes.Equal(u.Input, docUserFPInput(u.User, dfps)) {
			t.Fatalf("user %s %v: input is not the documented encoding", u.User, u.Devices)
		}
		if h := sha256.Sum256(u.Input); !bytes.Equal(h[:], u.Fingerprint) {
			t.Fatalf("user %s: fingerprint is not SHA-256 of its input", u.User)
		}
		fp, err := UserFingerprint(u.User, publics(t, u.Devices...))
		wantErr(t, err, nil)
		if !bytes.Equal(fp[:], u.Fingerprint) {
			t.Fatalf("user %s: UserFingerprint changed", u.User)
		}
		userFP[fmt.Sprint(u.Devices)] = u.Fingerprint
	}
	for _, s := range g.DeviceSets {
		var ufps [][]byte
		for _, part := range [][]string{userDevices(s.Devices, "alice"), userDevices(s.Devices, "bob")} {
			ufps = append(ufps, userFP[fmt.Sprint(part)])
		}
		if !bytes.Equal(s.Input, docDeviceSetInput(ufps)) {
			t.Fatalf("device set %v: input is not the documented encoding", s.Devices)
		}
		if h := sha256.Sum256(s.Input); !bytes.Equal(h[:], s.Digest) {
			t.Fatalf("device set %v: digest is not SHA-256 of its input", s.Devices)
		}
		d, err := DeviceSetDigest(publics(t, s.Devices...))
		wantErr(t, err, nil)
		if !bytes.Equal(d[:], s.Digest) {
			t.Fatalf("device set %v: DeviceSetDigest changed", s.Devices)
		}
	}
	sf := g.Safety
	if !bytes.Equal(sf.Input, docSafetyInput([][]byte{sf.UserFingerprints[0], sf.UserFingerprints[1]})) {
		t.Fatal("safety number input is not the documented encoding")
	}
	if h := sha512.Sum512(sf.Input); !bytes.Equal(h[:], sf.SHA512) || docSafetyDigits(h[:]) != sf.Number {
		t.Fatal("safety number is not the documented digits of SHA-512 of its input")
	}
	if NewSafetyNumber(Fingerprint(sf.UserFingerprints[1]), Fingerprint(sf.UserFingerprints[0])).String() != sf.Number {
		t.Fatal("NewSafetyNumber changed")
	}
}

// userDevices returns the names in names of user's devices.
func userDevices(names []string, user string) []string {
	var out []string
	for _, n := range names {
		if len(n) > len(user) && n[:len(user)+1] == user+"-" {
			out = append(out, n)
		}
	}
	return out
}

func checkGoldenEnvelopes(t *testing.T, g goldenVectors) {
	v := goldenSet(g)
	if len(g.Envelopes) != len(envelopeSpecs) {
		t.Fatalf("%d envelopes, the tests have %d", len(g.Envelopes), len(envelopeSpecs))
	}
	for i, ge := range g.Envelopes {
		s := envelopeSpecs[i]
		e, err := ParseKeyEnvelope(ge.Encoding)
		wantErr(t, err, nil)
		if re, _ := e.Marshal(); !bytes.Equal(re, ge.Encoding) {
			t.Fatalf("%s: re-encodes differently", ge.Name)
		}
		creator := dev(t, ge.Creator)
		if ge.Name != s.name || ge.Creator != s.creator || e.Creator != creator.local.Ref() || e.KeyVersion != ge.KeyVersion || ge.KeyVersion != s.version ||
			uint16(e.Suite) != ge.Suite || e.Suite != s.suite || e.Created != ge.CreatedMS || e.Conversation != g.Conversation ||
			!bytes.Equal(e.DeviceSetDigest[:], ge.DeviceSetDigest) || !slices.Equal(ge.Recipients, s.recipients) {
			t.Fatalf("%s: fields differ from the file or the tests", ge.Name)
		}
		for j, st := range e.Stanzas {
			if st.ref() != dev(t, ge.Recipients[j]).local.Ref() {
				t.Fatalf("%s: stanza %d is not %s", ge.Name, j, ge.Recipients[j])
			}
		}
		sigStart := len(ge.Encoding) - 2 - len(e.Signature)
		if !bytes.Equal(ge.SignedContent, docSignedContent(ContextKeyEnvelope, ge.Encoding[:sigStart])) {
			t.Fatalf("%s: signed content is not the documented one", ge.Name)
		}
		if err := docVerify(&creator.local.Signing.PublicKey, ge.SignedContent, e.Signature); err != nil {
			t.Fatalf("%s: signature: %v", ge.Name, err)
		}
		for name, info := range ge.RecordKeyInfos {
			label := map[string]string{"gcm_key": "messenger v1 e2e gcm key", "cbc_enc_key": "messenger v1 e2e cbc enc key", "cbc_mac_key": "messenger v1 e2e cbc mac key"}[name]
			if !bytes.Equal(info, docRecordKeyInfo(label, g.Conversation, ge.KeyVersion)) {
				t.Fatalf("%s: %s info is not the documented one", ge.Name, name)
			}
			if !bytes.Equal(ge.RecordKeys[name], docRecordKey(t, ge.ConversationKey, info)) {
				t.Fatalf("%s: %s is not the documented HKDF", ge.Name, name)
			}
		}
		if len(ge.RecordKeys) != map[uint16]int{1: 1, 2: 2}[ge.Suite] {
			t.Fatalf("%s: record keys %v", ge.Name, ge.RecordKeys)
		}
		for _, o := range openers {
			k, err := v.openEnvelope(t, o, ge.Encoding)
			if got := resultName(err); got != ge.Results[o] {
				t.Fatalf("%s opened by %s: %s, file says %s", ge.Name, o, got, ge.Results[o])
			}
			if err == nil && !bytes.Equal(k.secret[:], ge.ConversationKey) {
				t.Fatalf("%s opened by %s: another conversation key", ge.Name, o)
			}
		}
	}
}

func checkGoldenRecords(t *testing.T, g goldenVectors) {
	v := goldenSet(g)
	envs := map[string]goldenEnvelope{}
	for _, e := range g.Envelopes {
		envs[e.Name] = e
	}
	if len(g.Records) != len(recordSpecs) {
		t.Fatalf("%d records, the tests have %d", len(g.Records), len(recordSpecs))
	}
	for i, gr := range g.Records {
		s := recordSpecs[i]
		ge := envs[gr.Envelope]
		sender := dev(t, gr.Sender)
		r, err := ParseRecord(gr.Encoding)
		wantErr(t, err, nil)
		if re, _ := r.Marshal(); !bytes.Equal(re, gr.Encoding) {
			t.Fatalf("%s: re-encodes differently", gr.Name)
		}
		if gr.Name != s.name || gr.Sender != s.sender || gr.Text != s.text || gr.MessageID != s.id || !bytes.Equal(gr.IV, s.iv) {
			t.Fatalf("%s: differs from the tests", gr.Name)
		}
		hdr := docHeader(g.Conversation, ge.KeyVersion, sender.local.User, sender.local.ID, gr.Recipient, gr.MessageID, gr.Counter, gr.TimestampMS, ge.Suite)
		if !bytes.Equal(hdr, gr.Header) || !bytes.HasPrefix(gr.Encoding, hdr) {
			t.Fatalf("%s: header is not the documented encoding", gr.Name)
		}
		if !bytes.Equal(gr.Ciphertext, docCiphertext(t, ge.RecordKeys, ge.Suite, hdr, gr.IV, gr.Text)) || !bytes.Equal(r.Ciphertext, gr.Ciphertext) {
			t.Fatalf("%s: ciphertext is not the documented construction", gr.Name)
		}
		body := slices.Concat(hdr, docLen8(gr.IV), docLen16(gr.Ciphertext))
		if !bytes.Equal(gr.SignedContent, docSignedContent(ContextMessage, body)) || !bytes.HasPrefix(gr.Encoding, body) {
			t.Fatalf("%s: signed content is not the documented one", gr.Name)
		}
		if !bytes.Equal(gr.Encoding, slices.Concat(body, docLen16(r.Signature))) {
			t.Fatalf("%s: encoding is not header ‖ iv ‖ ciphertext ‖ signature", gr.Name)
		}
		if err := docVerify(&sender.local.Signing.PublicKey, gr.SignedContent, r.Signature); err != nil {
			t.Fatalf("%s: signature: %v", gr.Name, err)
		}
		for _, o := range openers {
			m, err := v.openRecord(t, o, nil, gr.Encoding)
			if got := resultName(err); got != gr.Results[o] {
				t.Fatalf("%s opened by %s: %s, file says %s", gr.Name, o, got, gr.Results[o])
			}
			if err == nil && m.Text != gr.Text {
				t.Fatalf("%s opened by %s: text %q", gr.Name, o, m.Text)
			}
		}
	}
}

func checkGoldenFailures(t *testing.T, g goldenVectors) {
	v := goldenSet(g)
	want := map[string]failureCase{}
	for _, c := range failureCases(t, newWorld(t)) {
		want[c.name] = c
	}
	for _, f := range g.Failures {
		t.Run(f.Name, func(t *testing.T) {
			c, ok := want[f.Name]
			if !ok {
				t.Fatalf("the tests no longer have %s (run -update)", f.Name)
			}
			delete(want, f.Name)
			if errorNames[c.want] != f.Error || c.kind != f.Kind || c.opener != f.Opener || !slices.Equal(c.prior, f.After) {
				t.Fatalf("the file's case differs from the tests' (run -update)")
			}
			err := v.run(t, failureCase{kind: f.Kind, opener: f.Opener, prior: f.After, data: f.Encoding})
			if got := resultName(err); got != f.Error {
				t.Fatalf("%s, file says %s (%v)", got, f.Error, err)
			}
		})
	}
	for name := range want {
		t.Errorf("the file lacks the case %s (run -update)", name)
	}
}

// TestDocsQuoteGolden: every hex string of 16 digits or more that
// docs/e2e.md quotes appears in the golden file, and so do the safety
// number and the count of failure cases: the document's examples are the
// file's.
func TestDocsQuoteGolden(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "e2e.md"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatal(err)
	}
	g := readGolden(t)
	quoted := regexp.MustCompile(`\b[0-9a-f]{16,}\b`).FindAll(doc, -1)
	if len(quoted) < 10 {
		t.Fatalf("docs/e2e.md quotes only %d hex strings", len(quoted))
	}
	for _, q := range quoted {
		if !bytes.Contains(golden, q) {
			t.Errorf("docs/e2e.md quotes %s, which is not in %s", q, goldenFile)
		}
	}
	for _, s := range []string{g.Safety.Number, fmt.Sprintf("%d inputs that must fail", len(g.Failures))} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("docs/e2e.md does not say %q", s)
		}
	}
}
