package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/cryptobyte"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// Constants of the key envelope (docs/e2e.md §4).
const (
	// FormatVersion is the first byte of every key envelope and record this
	// package writes and the only one it reads. A later format (a
	// forward-secret ratchet) takes another value; old history stays
	// readable because each envelope and record names its own format.
	FormatVersion = 1
	// MaxRecipients bounds the stanzas of a key envelope: the devices of
	// both users together. A parser checks the count before it reads a
	// stanza, so no envelope costs more than this many stanzas of work.
	MaxRecipients = 64
	// ConversationKeySize is the size of a conversation key: AES-256.
	ConversationKeySize = 32
	// LabelConversationKey is the RSA-OAEP (SHA-256) label of a stanza's
	// wrapped conversation key.
	LabelConversationKey = "messenger v1 conversation key"
	// ContextKeyEnvelope is the signature context of a key envelope.
	ContextKeyEnvelope = "messenger v1 key envelope"

	maxRSABytes = protocol.MaxRSABits / 8
	maxUserLen  = protocol.MaxUserLen
	// envelopeHeaderSize is the largest encoding of the fields before the
	// stanzas, count included.
	envelopeHeaderSize = 1 + 16 + 4 + 1 + maxUserLen + 16 + 8 + 2 + sha256.Size + 1
	maxStanzaSize      = 1 + maxUserLen + 16 + 2 + maxRSABytes
	// MaxKeyEnvelopeSize is the largest valid key envelope, in bytes.
	MaxKeyEnvelopeSize = envelopeHeaderSize + MaxRecipients*maxStanzaSize + 2 + maxRSABytes
)

// Stanza is one recipient device's copy of the conversation key, wrapped
// with RSA-OAEP-SHA256 (label LabelConversationKey) to the device's
// encryption key.
type Stanza struct {
	// User and Device name the recipient device.
	User   string
	Device uuid.UUID
	// Wrapped is the RSA-OAEP ciphertext of the conversation key.
	Wrapped []byte
}

func (s Stanza) ref() DeviceRef { return DeviceRef{User: s.User, ID: s.Device} }

// KeyEnvelope carries one key version of a direct conversation's key,
// wrapped to every current device of both users and signed by the device
// that created it. ParseKeyEnvelope returns one whose fields are
// structurally valid but not yet authenticated: nothing in it is to be
// believed before Open has verified the signature. The format version
// (FormatVersion) is implicit.
type KeyEnvelope struct {
	// Conversation is the conversation's id.
	Conversation uuid.UUID
	// KeyVersion numbers the conversation's keys: 1, 2, … as it rotates.
	KeyVersion uint32
	// Creator is the device that made and signed the envelope.
	Creator DeviceRef
	// Created is the creation time, Unix milliseconds.
	Created uint64
	// Suite is the record suite of this key version.
	Suite Suite
	// DeviceSetDigest is DeviceSetDigest of the devices wrapped to, as the
	// creator computed it (KeyPolicy compares it with the current devices).
	DeviceSetDigest Fingerprint
	// Stanzas are in canonical order: by user, then device id, no two for
	// the same device.
	Stanzas []Stanza
	// Signature is the creator's RSA-PSS signature (see Open).
	Signature []byte
}

// ParseKeyEnvelope decodes a key envelope and checks its structure: the
// format version (ErrUnsupportedFormat), the suite (ErrUnsupportedSuite),
// the stanza count (ErrTooManyRecipients, read before any stanza), and
// everything else of docs/e2e.md §4.3 (ErrMalformed). It does no
// cryptography: the result is unauthenticated until Open.
func ParseKeyEnvelope(data []byte) (*KeyEnvelope, error) {
	if len(data) > MaxKeyEnvelopeSize {
		return nil, fmt.Errorf("e2e: key envelope of %d bytes, limit %d: %w", len(data), MaxKeyEnvelopeSize, ErrMalformed)
	}
	s := cryptobyte.String(data)
	var format uint8
	if !s.ReadUint8(&format) {
		return nil, fmt.Errorf("e2e: key envelope: empty: %w", ErrMalformed)
	}
	if format != FormatVersion {
		return nil, fmt.Errorf("e2e: key envelope format %d: %w", format, ErrUnsupportedFormat)
	}
	e := new(KeyEnvelope)
	var suite uint16
	var count uint8
	if !s.CopyBytes(e.Conversation[:]) || !s.ReadUint32(&e.KeyVersion) ||
		!readUser(&s, &e.Creator.User) || !s.CopyBytes(e.Creator.ID[:]) ||
		!s.ReadUint64(&e.Created) || !s.ReadUint16(&suite) {
		return nil, fmt.Errorf("e2e: key envelope: header: %w", ErrMalformed)
	}
	e.Suite = Suite(suite)
	if !e.Suite.known() {
		return nil, fmt.Errorf("e2e: key envelope: suite %#04x: %w", suite, ErrUnsupportedSuite)
	}
	if !s.CopyBytes(e.DeviceSetDigest[:]) || !s.ReadUint8(&count) {
		return nil, fmt.Errorf("e2e: key envelope: header: %w", ErrMalformed)
	}
	if count > MaxRecipients {
		return nil, fmt.Errorf("e2e: key envelope: %d stanzas, limit %d: %w", count, MaxRecipients, ErrTooManyRecipients)
	}
	e.Stanzas = make([]Stanza, count)
	for i := range e.Stanzas {
		st := &e.Stanzas[i]
		var wrapped cryptobyte.String
		if !readUser(&s, &st.User) || !s.CopyBytes(st.Device[:]) || !s.ReadUint16LengthPrefixed(&wrapped) {
			return nil, fmt.Errorf("e2e: key envelope: stanza %d: %w", i, ErrMalformed)
		}
		st.Wrapped = bytes.Clone(wrapped)
	}
	var sig cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return nil, fmt.Errorf("e2e: key envelope: signature: %w", ErrMalformed)
	}
	e.Signature = bytes.Clone(sig)
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}

// readUser reads a one-byte-length-prefixed user name; it fails on an
// invalid name as on a short read.
func readUser(s *cryptobyte.String, out *string) bool {
	var u cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&u) || !protocol.ValidUserName(string(u)) {
		return false
	}
	*out = string(u)
	return true
}

// check applies the structural rules of docs/e2e.md §4.3 beyond what the
// decoder reads, so that an envelope built in memory is held to them too.
func (e *KeyEnvelope) check() error {
	switch {
	case !e.Suite.known():
		return fmt.Errorf("e2e: key envelope: suite %#04x: %w", uint16(e.Suite), ErrUnsupportedSuite)
	case len(e.Stanzas) > MaxRecipients:
		return fmt.Errorf("e2e: key envelope: %d stanzas, limit %d: %w", len(e.Stanzas), MaxRecipients, ErrTooManyRecipients)
	case e.KeyVersion == 0:
		return fmt.Errorf("e2e: key envelope: key version 0: %w", ErrMalformed)
	case !protocol.ValidUserName(e.Creator.User):
		return fmt.Errorf("e2e: key envelope: creator user name: %w", ErrMalformed)
	case len(e.Stanzas) == 0:
		return fmt.Errorf("e2e: key envelope: no stanza: %w", ErrMalformed)
	case !rsaSizeOK(len(e.Signature)):
		return fmt.Errorf("e2e: key envelope: signature of %d bytes: %w", len(e.Signature), ErrMalformed)
	}
	users := map[string]bool{}
	creator := false
	for i, st := range e.Stanzas {
		if !protocol.ValidUserName(st.User) {
			return fmt.Errorf("e2e: key envelope: stanza %d: user name: %w", i, ErrMalformed)
		}
		if !rsaSizeOK(len(st.Wrapped)) {
			return fmt.Errorf("e2e: key envelope: stanza %d: wrapped key of %d bytes: %w", i, len(st.Wrapped), ErrMalformed)
		}
		if i > 0 && compareRefs(e.Stanzas[i-1].ref(), st.ref()) >= 0 {
			return fmt.Errorf("e2e: key envelope: stanza %d out of order or duplicated: %w", i, ErrMalformed)
		}
		users[st.User] = true
		if st.ref() == e.Creator {
			creator = true
		}
	}
	if len(users) != 2 {
		return fmt.Errorf("e2e: key envelope: stanzas for %d users, want 2: %w", len(users), ErrMalformed)
	}
	if !creator {
		return fmt.Errorf("e2e: key envelope: no stanza for the creator device: %w", ErrMalformed)
	}
	return nil
}

// signedPart encodes every field before the signature: what the signature
// covers (through its SHA-256).
func (e *KeyEnvelope) signedPart() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddUint8(FormatVersion)
	b.AddBytes(e.Conversation[:])
	b.AddUint32(e.KeyVersion)
	addString8(&b, e.Creator.User)
	b.AddBytes(e.Creator.ID[:])
	b.AddUint64(e.Created)
	b.AddUint16(uint16(e.Suite))
	b.AddBytes(e.DeviceSetDigest[:])
	if len(e.Stanzas) > 255 {
		return nil, fmt.Errorf("e2e: key envelope: %d stanzas: %w", len(e.Stanzas), ErrTooManyRecipients)
	}
	b.AddUint8(uint8(len(e.Stanzas)))
	for _, st := range e.Stanzas {
		addString8(&b, st.User)
		b.AddBytes(st.Device[:])
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st.Wrapped) })
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: key envelope: %v: %w", err, ErrMalformed)
	}
	return out, nil
}

// Marshal encodes the envelope as it is, without checking it (so that
// tests can build invalid ones); it fails only for a value the encoding
// cannot carry.
func (e *KeyEnvelope) Marshal() ([]byte, error) {
	body, err := e.signedPart()
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(body)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Signature) })
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2e: key envelope: %v: %w", err, ErrMalformed)
	}
	return out, nil
}

// Users returns the two users of the envelope's stanzas, in byte order.
// Valid only on a checked envelope.
func (e *KeyEnvelope) Users() [2]string {
	var out [2]string
	for _, st := range e.Stanzas {
		switch {
		case out[0] == "":
			out[0] = st.User
		case st.User != out[0]:
			out[1] = st.User
			return out
		}
	}
	return out
}

// EnvelopeParams are the inputs of NewKeyEnvelope.
type EnvelopeParams struct {
	// Conversation is the conversation's id.
	Conversation uuid.UUID
	// KeyVersion is 1 for the first key, then one more than the key it
	// replaces (ConversationKey.NextVersion).
	KeyVersion uint32
	// Suite is the record suite; zero means SuiteGCM.
	Suite Suite
	// Created is the creation time; zero means now.
	Created time.Time
	// Devices are every current device of both users, the creator's own
	// included, as the caller looked them up and pinned them.
	Devices []Device
}

// NewKeyEnvelope creates a fresh random conversation key for
// p.Conversation, wraps it to every device of p.Devices and signs the
// envelope with the creator's signing key. It returns the encoded envelope
// (what goes to the server) and the opened key.
func NewKeyEnvelope(creator *LocalDevice, p EnvelopeParams) ([]byte, *ConversationKey, error) {
	secret := make([]byte, ConversationKeySize)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, fmt.Errorf("e2e: conversation key: %w", err)
	}
	return newKeyEnvelope(creator, p, secret)
}

// newKeyEnvelope is NewKeyEnvelope with a given conversation key (the
// golden vectors fix it).
func newKeyEnvelope(creator *LocalDevice, p EnvelopeParams, secret []byte) ([]byte, *ConversationKey, error) {
	me, err := creator.Public()
	if err != nil {
		return nil, nil, err
	}
	if p.KeyVersion == 0 {
		return nil, nil, fmt.Errorf("e2e: new key envelope: key version 0: %w", ErrMalformed)
	}
	if p.Suite == 0 {
		p.Suite = SuiteGCM
	}
	if !p.Suite.known() {
		return nil, nil, fmt.Errorf("e2e: new key envelope: suite %#04x: %w", uint16(p.Suite), ErrUnsupportedSuite)
	}
	if len(p.Devices) > MaxRecipients {
		return nil, nil, fmt.Errorf("e2e: new key envelope: %d devices, limit %d: %w", len(p.Devices), MaxRecipients, ErrTooManyRecipients)
	}
	digest, err := DeviceSetDigest(p.Devices) // checks every device, two users, no duplicates
	if err != nil {
		return nil, nil, err
	}
	devices := slices.Clone(p.Devices)
	slices.SortFunc(devices, func(a, b Device) int { return compareRefs(a.Ref(), b.Ref()) })
	i, found := slices.BinarySearchFunc(devices, me.Ref(), func(d Device, r DeviceRef) int { return compareRefs(d.Ref(), r) })
	if !found || !bytes.Equal(devices[i].Signing, me.Signing) || !bytes.Equal(devices[i].Encryption, me.Encryption) {
		return nil, nil, fmt.Errorf("e2e: new key envelope: the creator device %s/%s is not among the devices with its own keys: %w", me.User, me.ID, ErrBadDevice)
	}
	created := p.Created
	if created.IsZero() {
		created = time.Now()
	}
	if created.UnixMilli() < 0 {
		return nil, nil, fmt.Errorf("e2e: new key envelope: creation time before 1970: %w", ErrMalformed)
	}
	e := &KeyEnvelope{
		Conversation:    p.Conversation,
		KeyVersion:      p.KeyVersion,
		Creator:         me.Ref(),
		Created:         uint64(created.UnixMilli()),
		Suite:           p.Suite,
		DeviceSetDigest: digest,
		Stanzas:         make([]Stanza, len(devices)),
	}
	for i, d := range devices {
		pub, _ := d.encryptionKey() // checked by DeviceSetDigest
		w, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, secret, []byte(LabelConversationKey))
		if err != nil {
			return nil, nil, fmt.Errorf("e2e: wrap to %s/%s: %w", d.User, d.ID, err)
		}
		e.Stanzas[i] = Stanza{User: d.User, Device: d.ID, Wrapped: w}
	}
	body, err := e.signedPart()
	if err != nil {
		return nil, nil, err
	}
	if e.Signature, err = sign(creator.Signing, ContextKeyEnvelope, body); err != nil {
		return nil, nil, err
	}
	if err := e.check(); err != nil {
		return nil, nil, err
	}
	out, err := e.Marshal()
	if err != nil {
		return nil, nil, err
	}
	k, err := newConversationKey(e, secret)
	if err != nil {
		return nil, nil, err
	}
	return out, k, nil
}

// Open authenticates the envelope and unwraps the conversation key for
// me, the local device. The caller passes the conversation it expects
// (its id, and peer, the other user) and creator, the Device the envelope
// names as its creator as the caller looked it up and pinned it. The
// checks run in this order, each with its error:
//
//  1. structure, as ParseKeyEnvelope (ErrUnsupportedFormat,
//     ErrUnsupportedSuite, ErrTooManyRecipients, ErrMalformed);
//  2. creator is the device named in the envelope (ErrWrongDevice) and
//     its signing key follows the RSA key rule (ErrBadKey);
//  3. the signature, over "messenger v1 key envelope" and the SHA-256 of
//     every byte before the signature field (ErrBadSignature);
//  4. the conversation id is conversation and the stanzas' two users are
//     me.User and peer (ErrWrongConversation);
//  5. a stanza for me.User and me.ID exists (ErrNotARecipient);
//  6. that one stanza, and no other, unwraps to 32 bytes (ErrUnwrap).
//
// No RSA decryption happens before step 6, and none for another stanza.
func (e *KeyEnvelope) Open(conversation uuid.UUID, peer string, creator Device, me *LocalDevice) (*ConversationKey, error) {
	if me == nil || me.Encryption == nil {
		return nil, fmt.Errorf("e2e: open key envelope: no local device: %w", ErrBadDevice)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	if creator.Ref() != e.Creator {
		return nil, fmt.Errorf("e2e: key envelope created by %s/%s, key given for %s/%s: %w",
			e.Creator.User, e.Creator.ID, creator.User, creator.ID, ErrWrongDevice)
	}
	pub, err := creator.signingKey()
	if err != nil {
		return nil, err
	}
	body, err := e.signedPart()
	if err != nil {
		return nil, err
	}
	if err := verify(pub, ContextKeyEnvelope, body, e.Signature); err != nil {
		return nil, fmt.Errorf("e2e: key envelope %d of conversation %s: %w", e.KeyVersion, e.Conversation, err)
	}
	if e.Conversation != conversation || !sameUsers(e.Users(), me.User, peer) {
		return nil, fmt.Errorf("e2e: key envelope for conversation %s between %v, want %s between %s and %s: %w",
			e.Conversation, e.Users(), conversation, me.User, peer, ErrWrongConversation)
	}
	i, found := slices.BinarySearchFunc(e.Stanzas, me.Ref(), func(st Stanza, r DeviceRef) int { return compareRefs(st.ref(), r) })
	if !found {
		return nil, fmt.Errorf("e2e: key envelope %d has no stanza for %s/%s: %w", e.KeyVersion, me.User, me.ID, ErrNotARecipient)
	}
	secret, err := rsaDecryptOAEP(me.Encryption, e.Stanzas[i].Wrapped, []byte(LabelConversationKey))
	if err != nil || len(secret) != ConversationKeySize {
		return nil, fmt.Errorf("e2e: key envelope %d, stanza of %s/%s: %w", e.KeyVersion, me.User, me.ID, ErrUnwrap)
	}
	return newConversationKey(e, secret)
}

// sameUsers reports whether users (in byte order) are a and b, a ≠ b.
func sameUsers(users [2]string, a, b string) bool {
	if a > b {
		a, b = b, a
	}
	return a != b && users == [2]string{a, b}
}

// ConversationKey is an opened key version of a conversation: the secret
// conversation key, the record keys derived from it, and what the signed
// envelope said about it. Its secret never leaves it; a client keeps the
// envelope and opens it again, not the key.
type ConversationKey struct {
	env     KeyEnvelope // the authenticated envelope, signature and stanzas included
	secret  [ConversationKeySize]byte
	records recordKeys
}

func newConversationKey(e *KeyEnvelope, secret []byte) (*ConversationKey, error) {
	k := &ConversationKey{env: *e}
	k.env.Stanzas = slices.Clone(e.Stanzas)
	copy(k.secret[:], secret)
	var err error
	if k.records, err = deriveRecordKeys(k.secret[:], e.Conversation, e.KeyVersion, e.Suite); err != nil {
		return nil, err
	}
	return k, nil
}

// Conversation returns the conversation's id.
func (k *ConversationKey) Conversation() uuid.UUID { return k.env.Conversation }

// Version returns the key version.
func (k *ConversationKey) Version() uint32 { return k.env.KeyVersion }

// Suite returns the record suite of the key version.
func (k *ConversationKey) Suite() Suite { return k.env.Suite }

// Users returns the conversation's two users, in byte order.
func (k *ConversationKey) Users() [2]string { return k.env.Users() }

// Creator returns the device that created the key version.
func (k *ConversationKey) Creator() DeviceRef { return k.env.Creator }

// Created returns the creation time the envelope carries.
func (k *ConversationKey) Created() time.Time { return time.UnixMilli(int64(k.env.Created)) }

// DeviceSetDigest returns the digest of the devices the key was wrapped
// to, as its creator computed it.
func (k *ConversationKey) DeviceSetDigest() Fingerprint { return k.env.DeviceSetDigest }

// Recipients returns the devices the key was wrapped to, in stanza order.
func (k *ConversationKey) Recipients() []DeviceRef {
	out := make([]DeviceRef, len(k.env.Stanzas))
	for i, st := range k.env.Stanzas {
		out[i] = st.ref()
	}
	return out
}

// HasDevice reports whether the key was wrapped to device d.
func (k *ConversationKey) HasDevice(d DeviceRef) bool {
	_, found := slices.BinarySearchFunc(k.env.Stanzas, d, func(st Stanza, r DeviceRef) int { return compareRefs(st.ref(), r) })
	return found
}

// NextVersion returns the key version that replaces this one.
func (k *ConversationKey) NextVersion() (uint32, error) {
	if k.env.KeyVersion == ^uint32(0) {
		return 0, fmt.Errorf("e2e: key versions exhausted: %w", ErrMalformed)
	}
	return k.env.KeyVersion + 1, nil
}

// Peer returns the conversation's user other than user.
func (k *ConversationKey) Peer(user string) string {
	u := k.Users()
	if u[0] == user {
		return u[1]
	}
	return u[0]
}

// Keyring holds the opened key versions of one conversation for one
// device, the keys Open looks records up in. It is safe for concurrent
// use.
type Keyring struct {
	conversation uuid.UUID
	mu           sync.RWMutex
	users        [2]string
	keys         map[uint32]*ConversationKey
	latest       *ConversationKey
}

// NewKeyring returns an empty keyring for the conversation.
func NewKeyring(conversation uuid.UUID) *Keyring {
	return &Keyring{conversation: conversation, keys: map[uint32]*ConversationKey{}}
}

// Conversation returns the keyring's conversation id.
func (r *Keyring) Conversation() uuid.UUID { return r.conversation }

// Add adds an opened key. It must be of the keyring's conversation and
// users (else ErrWrongConversation); adding the same key twice is a no-op,
// a different key for a version already held is ErrKeyConflict.
func (r *Keyring) Add(k *ConversationKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k.Conversation() != r.conversation || (r.latest != nil && k.Users() != r.users) {
		return fmt.Errorf("e2e: key of conversation %s between %v in the keyring of %s: %w", k.Conversation(), k.Users(), r.conversation, ErrWrongConversation)
	}
	if old, ok := r.keys[k.Version()]; ok {
		if subtle.ConstantTimeCompare(old.secret[:], k.secret[:]) != 1 || old.Suite() != k.Suite() {
			return fmt.Errorf("e2e: key version %d of conversation %s: %w", k.Version(), r.conversation, ErrKeyConflict)
		}
		return nil
	}
	r.keys[k.Version()] = k
	r.users = k.Users()
	if r.latest == nil || k.Version() > r.latest.Version() {
		r.latest = k
	}
	return nil
}

// Key returns the key of a version, if held.
func (r *Keyring) Key(version uint32) (*ConversationKey, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.keys[version]
	return k, ok
}

// Latest returns the key of the highest version held, or nil: the one to
// seal new messages with.
func (r *Keyring) Latest() *ConversationKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.latest
}
