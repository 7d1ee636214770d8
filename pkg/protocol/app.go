package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Application message types (the "t" field).
const (
	// Client → server.
	MsgJoin  = "join"  // join Room (as display name Name)
	MsgLeave = "leave" // leave Room
	MsgSend  = "send"  // say Body in Room
	MsgEnd   = "end"   // end the session: the server forgets it and closes

	MsgRegister = "register" // create account User with Password and Keys; Sig proves the signing key
	MsgLogin    = "login"    // log in as User with Password and Sig (by Device's key); new Keys add a device
	MsgAuth     = "auth"     // authenticate this connection as User (Device) by Sig alone
	MsgLookup   = "lookup"   // fetch User's current devices
	// MsgDevices lists the devices of this connection's user; MsgRemoveDevice
	// removes the user's device Device, signed like auth (Sig).
	MsgDevices      = "devices"
	MsgRemoveDevice = "remove_device"
	// MsgKeyChallenge asks for a challenge to the encryption key Key, whose
	// answer proves possession of it in the next register or login with
	// Keys (docs/protocol.md §10.4).
	MsgKeyChallenge = "key_challenge"
	MsgPasswd       = "passwd" // change the password of User (this connection's): Password, NewPassword, Sig by the current keys

	// Device link codes (docs/protocol.md §10.5).
	MsgLinkStart   = "link_start"   // an existing device asks for a link id; the answer: link (Link, Expires)
	MsgLinkJoin    = "link_join"    // a new device offers Keys for Link as User: Sig, Proof, MAC; the answer: ack
	MsgLinkApprove = "link_approve" // the existing device approves Device for Link: Sig is the approval; the answer: ack

	// Room history (docs/protocol.md §8.4).
	MsgRead    = "read"    // Room read up to Seq: advance the account's read position
	MsgHistory = "history" // a page of Room's stored messages (After or Before, Limit); the answer: Msgs, Seq, Head, Epoch, More
	MsgRooms   = "rooms"   // the account's rooms with head and read position; the answer: Rooms

	// Direct conversations (docs/protocol.md §8.5). read takes Conv in
	// place of Room for a conversation's stream.
	MsgConvOpen    = "conv_open"    // open (creating if need be) the conversation with User; the answer: conv
	MsgConvs       = "convs"        // the account's conversations; the answer: convs (Convs)
	MsgConvPutKey  = "conv_put_key" // store Envelope as key Version of Conv; the answer: ack (Conv, Version)
	MsgConvKeys    = "conv_keys"    // Conv's key envelopes above Version; the answer: conv_keys (Envelopes)
	MsgConvSend    = "conv_send"    // store and deliver Record in Conv; the answer: ack (Conv, Seq, Epoch)
	MsgConvHistory = "conv_history" // a page of Conv's records (After or Before, Limit); the answer: history (Conv, Msgs of conv_msg)

	// Streamed answers (docs/protocol.md §8.6): not stored. Both are
	// requests (answered with ack) and, pushed by the server, events.
	MsgStream     = "stream"      // Event of Stream in Room; Body the text of a delta; Reason on end
	MsgConvStream = "conv_stream" // Event of Stream in Conv; Record an e2e record of a delta or end

	// Server → client.
	MsgReady    = "ready"    // first record after the handshake: Session
	MsgAck      = "ack"      // the request Ref was carried out
	MsgJoined   = "joined"   // answer to join: Room, Members
	MsgLeft     = "left"     // answer to leave: Room
	MsgMessage  = "msg"      // a message said in Room by From
	MsgPresence = "presence" // From joined or left Room (Event), or Room's member Count (Event PresenceCount)
	MsgError    = "error"    // request Ref failed with Code; Fatal ends the session

	MsgAuthed    = "authed"     // answer to register/login/auth: User, Device, Fingerprint (the device's)
	MsgKeys      = "keys"       // answer to lookup and devices: User, Devices, Fingerprint (the user's)
	MsgKeyChange = "key_change" // User, who shares Room with you (or is you), changed devices (Device, Fingerprint)
	MsgChallenge = "challenge"  // answer to key_challenge: Wrapped
	MsgLink      = "link"       // answer to link_start: Link, Expires
	MsgLinkOffer = "link_offer" // pushed to the user's devices: a new device joined Link (User, Keys, DeviceName, MAC)
	MsgLinkDone  = "link_done"  // pushed to the new device: Link approved, Device added; log in with auth

	MsgConv    = "conv"     // answer to conv_open: Conv, User (the peer), Version, Head, Epoch, Seq (read position)
	MsgConvMsg = "conv_msg" // a record of Conv: From, Seq, Epoch, TS, Record
	MsgConvKey = "conv_key" // a new key envelope of Conv: From, Version, TS, Envelope
	// MsgMention tells User that From mentioned them ("@user") in Room, a
	// room they are not a member of, in the message Seq (docs/protocol.md
	// §8.6). It carries no text.
	MsgMention = "mention"
)

// Stream events (the "event" of stream and conv_stream).
const (
	StreamStart = "start" // a producer begins an answer
	StreamDelta = "delta" // the next piece of the answer
	StreamEnd   = "end"   // the answer is over (Reason says why)
	StreamStop  = "stop"  // a member asks the producer to stop
)

// Stream end reasons (the "reason" of an end event).
const (
	ReasonDone   = "done"   // the answer is complete
	ReasonStop   = "stop"   // a member stopped it
	ReasonLength = "length" // cut at the reply-length cap
	ReasonError  = "error"  // the producer failed
)

// ValidStreamEvent reports whether s is one of the four stream events.
func ValidStreamEvent(s string) bool {
	switch s {
	case StreamStart, StreamDelta, StreamEnd, StreamStop:
		return true
	}
	return false
}

// validStreamReason reports whether s may be an end's reason ("" too).
func validStreamReason(s string) bool {
	switch s {
	case "", ReasonDone, ReasonStop, ReasonLength, ReasonError:
		return true
	}
	return false
}

// Limits of direct conversations (docs/protocol.md §8.5).
const (
	// MaxConvRecord bounds a conv_send's record, in bytes: at least the
	// largest record pkg/e2e makes (e2e.MaxRecordSize).
	MaxConvRecord = 20 << 10
	// MaxConvEnvelope bounds a conv_put_key's envelope, in bytes, so that
	// one envelope fits in a record in base64. pkg/e2e allows larger
	// ones (64 devices of 8192-bit keys); 40 KiB holds 32 stanzas of
	// 4096-bit keys.
	MaxConvEnvelope = 40 << 10
)

// Limits on application messages.
const (
	// MaxBody is the largest message body in bytes.
	MaxBody = 16 << 10
	// MaxNameLen bounds room and display names, in bytes.
	MaxNameLen = 64
	// MaxUserLen bounds user names, in bytes.
	MaxUserLen = 32
	// MaxPasswordLen bounds passwords, in bytes.
	MaxPasswordLen = 1024
	// MaxSignature bounds a signature, in bytes (RSA-8192).
	MaxSignature = 1024
)

// PresenceCount is the Event of a presence message that carries a room's
// member Count in place of join and leave events (docs/protocol.md §8.3).
const PresenceCount = "count"

// Message is one application message, JSON-encoded inside a record. Only
// the fields its type uses are set; see docs/protocol.md for which.
type Message struct {
	Type string `json:"t"`
	// ID identifies a client request: a UUID in canonical lower-case form
	// (8-4-4-4-12 hex digits), fresh for every request; the server
	// remembers it to reject replays.
	ID string `json:"id,omitempty"`
	// TS is the sender's clock in Unix milliseconds.
	TS int64 `json:"ts,omitempty"`
	// Ref is the ID of the request an answer refers to.
	Ref  string `json:"ref,omitempty"`
	Room string `json:"room,omitempty"`
	Name string `json:"name,omitempty"`
	From string `json:"from,omitempty"`
	// Anon marks a message or presence event from a connection that has not
	// logged in: From is then only a display name it chose, not an account.
	Anon    bool     `json:"anon,omitempty"`
	Body    string   `json:"body,omitempty"`
	Event   string   `json:"event,omitempty"`
	Members []string `json:"members,omitempty"`
	// Count is how many members a room has on every node (joined, and a
	// presence message whose Event is PresenceCount).
	Count   int          `json:"count,omitempty"`
	Session *SessionInfo `json:"session,omitempty"`
	Code    Code         `json:"code,omitempty"`
	Error   string       `json:"error,omitempty"`
	Fatal   bool         `json:"fatal,omitempty"`

	// Accounts and the key directory.
	User     string     `json:"user,omitempty"`
	Password string     `json:"password,omitempty"`
	Keys     *KeyBundle `json:"keys,omitempty"`
	// NewPassword is the password a passwd request sets; Password is then
	// the current one.
	NewPassword string `json:"new_password,omitempty"`
	// Sig is SignClientAuth over this connection's exporter and User.
	Sig         []byte `json:"sig,omitempty"`
	Version     int    `json:"version,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Device names a device (a UUID): the one auth, login and passwd sign
	// with, the one remove_device removes, the one authed logged in.
	Device string `json:"device,omitempty"`
	// DeviceName labels the device register or login with Keys adds.
	DeviceName string `json:"device_name,omitempty"`
	// Devices are a user's current devices (answers keys).
	Devices []DeviceInfo `json:"devices,omitempty"`

	// Proof of possession of an encryption key (docs/protocol.md §10.4).
	// Key is the PKIX DER of the encryption key a key_challenge is about.
	Key []byte `json:"key,omitempty"`
	// Wrapped is a challenge's ChallengeSize random bytes, RSA-OAEP
	// encrypted to Key with the label LabelKeyPossession.
	Wrapped []byte `json:"wrapped,omitempty"`
	// Proof is KeyPossessionProof: register, and login with Keys, carry it.
	Proof []byte `json:"proof,omitempty"`

	// Device link codes (docs/protocol.md §10.5).
	// Link is a link id (LinkIDSize bytes).
	Link []byte `json:"link,omitempty"`
	// MAC is a link_join's LinkMAC.
	MAC []byte `json:"mac,omitempty"`
	// Expires is when a link id stops working, Unix milliseconds.
	Expires int64 `json:"expires,omitempty"`

	// Room history (docs/protocol.md §8.4).
	// Mid is a send's message id: a UUID in canonical form that stays the
	// same across retries of one message (ID changes on every try). Empty
	// means ID.
	Mid string `json:"mid,omitempty"`
	// Seq is a message's number in its room's stream (msg, ack), the
	// position a read request records, or the last message a join's
	// catch-up sends (joined).
	Seq int64 `json:"seq,omitempty"`
	// Epoch names the copy of the room's stream that Seq and Head count in.
	Epoch string `json:"epoch,omitempty"`
	// Head is the stream's last sequence number (joined, history).
	Head int64 `json:"head,omitempty"`
	// After asks for the messages with a sequence number above it (join,
	// history); Before for those below it (history).
	After  *int64 `json:"after,omitempty"`
	Before *int64 `json:"before,omitempty"`
	// Limit is the most messages a history page holds (0: the server's
	// default).
	Limit int `json:"limit,omitempty"`
	// More says that a history page was cut (by Limit or by size), or that
	// a join did not catch up because too much was missed.
	More bool `json:"more,omitempty"`
	// Msgs are a history page's messages, each a "msg", in ascending Seq.
	Msgs []*Message `json:"msgs,omitempty"`
	// Rooms is the answer to a rooms request.
	Rooms []RoomPosition `json:"rooms,omitempty"`

	// Direct conversations (docs/protocol.md §8.5).
	// Conv is a conversation's id: a UUID in canonical lower-case form.
	Conv string `json:"conv,omitempty"`
	// Record is a pkg/e2e record (conv_send, conv_msg), opaque to the
	// server but for its header.
	Record []byte `json:"record,omitempty"`
	// Envelope is a pkg/e2e key envelope (conv_put_key, conv_key).
	Envelope []byte `json:"envelope,omitempty"`
	// Envelopes answer conv_keys, in ascending Version.
	Envelopes []*Message `json:"envelopes,omitempty"`
	// Convs answer a convs request.
	Convs []ConvPosition `json:"convs,omitempty"`

	// Streamed answers (docs/protocol.md §8.6).
	// Stream names one streamed answer: a UUID in canonical lower-case
	// form. On send and conv_send (and the msg and conv_msg delivered
	// live) it links the stored final answer to its stream.
	Stream string `json:"stream,omitempty"`
	// Reason says why a stream ended: done, stop, length or error.
	Reason string `json:"reason,omitempty"`
}

// ConvPosition is one conversation of the account in a convs answer.
type ConvPosition struct {
	// Conv is the conversation's id.
	Conv string `json:"conv"`
	// User is the other user.
	User string `json:"user"`
	// Version is the latest key version (0: none yet).
	Version int `json:"version"`
	// Head is the last sequence number of its stream (0: no record yet).
	Head int64 `json:"head"`
	// Read is the account's read position (0: none); Head - Read records
	// are unread.
	Read int64 `json:"read"`
	// Epoch is the stream's epoch.
	Epoch string `json:"epoch,omitempty"`
}

// RoomPosition is one room of the account in a rooms answer.
type RoomPosition struct {
	// Room is the room's name.
	Room string `json:"room"`
	// Head is the last sequence number of its stream (0: no message yet).
	Head int64 `json:"head"`
	// Read is the account's read position (0: none).
	Read int64 `json:"read"`
	// Epoch is the stream's epoch ("" before the first message).
	Epoch string `json:"epoch,omitempty"`
}

// SessionInfo describes the session a connection belongs to; the "ready"
// message carries it.
type SessionInfo struct {
	// ID is the session id, hex, to pass as the resume id later.
	ID string `json:"id"`
	// TTL is how long, in seconds, the session stays resumable after the
	// last activity.
	TTL int `json:"ttl"`
	// Resumed is true when this connection resumed an existing session.
	Resumed bool `json:"resumed"`
	// Name is the display name the server gives this session until join
	// sets one.
	Name string `json:"name"`
	// User is the account a resumed session is logged in as; empty for
	// anonymous sessions.
	User string `json:"user,omitempty"`
	// ServerTime is the server's clock in Unix milliseconds, so a client
	// can see its own skew against the timestamp window.
	ServerTime int64 `json:"server_time"`
	// Window is the accepted timestamp skew in seconds.
	Window int `json:"window"`
}

// Encode returns the JSON encoding of m, without HTML escaping (so '<',
// '>' and '&' stay one byte each). An encoding longer than MaxPlaintext,
// which no record could carry, is an error wrapping CodeTooLarge: a body
// within MaxBody can still grow past it through JSON escapes (a control
// character is six bytes).
func (m *Message) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Type, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	if len(b) > MaxPlaintext {
		return nil, fmt.Errorf("protocol: encode %s: %d bytes encoded, limit %d: %w", m.Type, len(b), MaxPlaintext, CodeTooLarge)
	}
	return b, nil
}

// DecodeMessage parses one application message. It rejects invalid JSON
// and a missing type with CodeMalformed; unknown fields are ignored, so
// later protocol additions do not break older peers.
func DecodeMessage(data []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("protocol: decode message: %w", CodeMalformed)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("protocol: decode message: no type: %w", CodeMalformed)
	}
	return &m, nil
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	userPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

// ValidUserName reports whether s may name a user: 1 to MaxUserLen bytes of
// lower-case letters, digits, '_', '.', '-', starting with a letter or
// digit. Clients lower-case what people type before sending it.
func ValidUserName(s string) bool {
	return len(s) > 0 && len(s) <= MaxUserLen && userPattern.MatchString(s)
}

// ValidName reports whether s may name a room or a display name: 1 to
// MaxNameLen bytes of letters, digits, '_', '.', '-', starting with a
// letter or digit.
func ValidName(s string) bool {
	return len(s) > 0 && len(s) <= MaxNameLen && namePattern.MatchString(s)
}

// ValidateRequest checks a client request's shape: a UUID ID, a timestamp,
// and the fields its type needs. It returns CodeBadRequest or CodeTooLarge
// (both non-fatal); checking the timestamp window and replays is the
// server's job.
func ValidateRequest(m *Message) error {
	if u, err := uuid.Parse(m.ID); err != nil || u.String() != m.ID {
		return fmt.Errorf("protocol: %s: id must be a UUID in canonical lower-case form: %w", m.Type, CodeBadRequest)
	}
	if m.TS <= 0 {
		return fmt.Errorf("protocol: %s: missing timestamp: %w", m.Type, CodeBadRequest)
	}
	switch m.Type {
	case MsgJoin:
		if !ValidName(m.Room) {
			return fmt.Errorf("protocol: join: bad room name: %w", CodeBadRequest)
		}
		if m.Name != "" && !ValidName(m.Name) {
			return fmt.Errorf("protocol: join: bad display name: %w", CodeBadRequest)
		}
		if m.After != nil && *m.After < 0 {
			return fmt.Errorf("protocol: join: after must be >= 0: %w", CodeBadRequest)
		}
	case MsgLeave:
		if !ValidName(m.Room) {
			return fmt.Errorf("protocol: leave: bad room name: %w", CodeBadRequest)
		}
	case MsgSend:
		if !ValidName(m.Room) {
			return fmt.Errorf("protocol: send: bad room name: %w", CodeBadRequest)
		}
		if len(m.Body) > MaxBody {
			return fmt.Errorf("protocol: send: body of %d bytes, limit %d: %w", len(m.Body), MaxBody, CodeTooLarge)
		}
		if m.Body == "" || !utf8.ValidString(m.Body) {
			return fmt.Errorf("protocol: send: body must be non-empty UTF-8: %w", CodeBadRequest)
		}
		if m.Mid != "" {
			if u, err := uuid.Parse(m.Mid); err != nil || u.String() != m.Mid || u == uuid.Nil {
				return fmt.Errorf("protocol: send: mid must be a UUID in canonical lower-case form, not nil: %w", CodeBadRequest)
			}
		}
		if err := validStreamID(m, true); err != nil {
			return err
		}
	case MsgStream, MsgConvStream:
		if err := validateStream(m); err != nil {
			return err
		}
	case MsgRead:
		if m.Conv != "" {
			if m.Room != "" {
				return fmt.Errorf("protocol: read: room and conv exclude each other: %w", CodeBadRequest)
			}
			if err := validConv(m); err != nil {
				return err
			}
		} else if !ValidName(m.Room) {
			return fmt.Errorf("protocol: read: bad room name: %w", CodeBadRequest)
		}
		if m.Seq < 1 {
			return fmt.Errorf("protocol: read: seq must be >= 1: %w", CodeBadRequest)
		}
	case MsgHistory:
		if !ValidName(m.Room) {
			return fmt.Errorf("protocol: history: bad room name: %w", CodeBadRequest)
		}
		if m.After != nil && m.Before != nil {
			return fmt.Errorf("protocol: history: after and before exclude each other: %w", CodeBadRequest)
		}
		if m.After != nil && *m.After < 0 || m.Before != nil && *m.Before < 0 || m.Limit < 0 {
			return fmt.Errorf("protocol: history: after, before and limit must be >= 0: %w", CodeBadRequest)
		}
	case MsgRooms, MsgConvs:
	case MsgConvOpen:
		if !ValidUserName(m.User) {
			return fmt.Errorf("protocol: conv_open: bad user name: %w", CodeBadRequest)
		}
	case MsgConvPutKey:
		if err := validConv(m); err != nil {
			return err
		}
		if m.Version < 1 {
			return fmt.Errorf("protocol: conv_put_key: version must be >= 1: %w", CodeBadRequest)
		}
		if len(m.Envelope) > MaxConvEnvelope {
			return fmt.Errorf("protocol: conv_put_key: envelope of %d bytes, limit %d: %w", len(m.Envelope), MaxConvEnvelope, CodeTooLarge)
		}
		if len(m.Envelope) == 0 {
			return fmt.Errorf("protocol: conv_put_key: envelope missing: %w", CodeBadRequest)
		}
	case MsgConvKeys:
		if err := validConv(m); err != nil {
			return err
		}
		if m.Version < 0 {
			return fmt.Errorf("protocol: conv_keys: version must be >= 0: %w", CodeBadRequest)
		}
	case MsgConvSend:
		if err := validConv(m); err != nil {
			return err
		}
		if len(m.Record) > MaxConvRecord {
			return fmt.Errorf("protocol: conv_send: record of %d bytes, limit %d: %w", len(m.Record), MaxConvRecord, CodeTooLarge)
		}
		if len(m.Record) == 0 {
			return fmt.Errorf("protocol: conv_send: record missing: %w", CodeBadRequest)
		}
		if err := validStreamID(m, true); err != nil {
			return err
		}
	case MsgConvHistory:
		if err := validConv(m); err != nil {
			return err
		}
		if m.After != nil && m.Before != nil {
			return fmt.Errorf("protocol: conv_history: after and before exclude each other: %w", CodeBadRequest)
		}
		if m.After != nil && *m.After < 0 || m.Before != nil && *m.Before < 0 || m.Limit < 0 {
			return fmt.Errorf("protocol: conv_history: after, before and limit must be >= 0: %w", CodeBadRequest)
		}
	case MsgEnd:
	case MsgRegister, MsgLogin, MsgAuth, MsgPasswd:
		if !ValidUserName(m.User) {
			return fmt.Errorf("protocol: %s: bad user name: %w", m.Type, CodeBadRequest)
		}
		if m.Type != MsgAuth && (m.Password == "" || len(m.Password) > MaxPasswordLen) {
			return fmt.Errorf("protocol: %s: password missing or over %d bytes: %w", m.Type, MaxPasswordLen, CodeBadRequest)
		}
		if m.Type == MsgPasswd && (m.NewPassword == "" || len(m.NewPassword) > MaxPasswordLen) {
			return fmt.Errorf("protocol: passwd: new password missing or over %d bytes: %w", MaxPasswordLen, CodeBadRequest)
		}
		if m.Type == MsgRegister && m.Keys == nil {
			return fmt.Errorf("protocol: register: keys missing: %w", CodeBadRequest)
		}
		if (m.Type == MsgAuth || m.Type == MsgPasswd) && m.Keys != nil {
			return fmt.Errorf("protocol: %s: keys are published by register or login: %w", m.Type, CodeBadRequest)
		}
		if len(m.Sig) == 0 || len(m.Sig) > MaxSignature {
			return fmt.Errorf("protocol: %s: signature missing or too large: %w", m.Type, CodeBadRequest)
		}
		// A missing proof is the server's bad_key, like a wrong one; a
		// proof where no keys are published is a malformed request.
		if m.Proof != nil && m.Keys == nil {
			return fmt.Errorf("protocol: %s: a proof goes only with keys: %w", m.Type, CodeBadRequest)
		}
		if m.Proof != nil && len(m.Proof) != ChallengeSize {
			return fmt.Errorf("protocol: %s: proof of %d bytes, want %d: %w", m.Type, len(m.Proof), ChallengeSize, CodeBadRequest)
		}
		if err := validateDevice(m); err != nil {
			return err
		}
	case MsgKeyChallenge:
		if len(m.Key) == 0 {
			return fmt.Errorf("protocol: key_challenge: key missing: %w", CodeBadRequest)
		}
	case MsgLookup:
		if !ValidUserName(m.User) {
			return fmt.Errorf("protocol: lookup: bad user name: %w", CodeBadRequest)
		}
	case MsgDevices, MsgLinkStart:
	case MsgLinkJoin:
		if !ValidUserName(m.User) {
			return fmt.Errorf("protocol: link_join: bad user name: %w", CodeBadRequest)
		}
		if len(m.Link) != LinkIDSize || len(m.MAC) != LinkMACSize {
			return fmt.Errorf("protocol: link_join: link of %d bytes and mac of %d bytes wanted: %w", LinkIDSize, LinkMACSize, CodeBadRequest)
		}
		if m.Keys == nil || len(m.Proof) != ChallengeSize {
			return fmt.Errorf("protocol: link_join: keys and a proof of %d bytes wanted: %w", ChallengeSize, CodeBadRequest)
		}
		if len(m.Sig) == 0 || len(m.Sig) > MaxSignature {
			return fmt.Errorf("protocol: link_join: signature missing or too large: %w", CodeBadRequest)
		}
		if err := validateDevice(m); err != nil {
			return err
		}
	case MsgLinkApprove:
		if len(m.Link) != LinkIDSize {
			return fmt.Errorf("protocol: link_approve: link of %d bytes wanted: %w", LinkIDSize, CodeBadRequest)
		}
		if _, err := ParseDeviceID(m.Device); err != nil {
			return fmt.Errorf("protocol: link_approve: %w", err)
		}
		if len(m.Sig) == 0 || len(m.Sig) > MaxSignature {
			return fmt.Errorf("protocol: link_approve: signature missing or too large: %w", CodeBadRequest)
		}
	case MsgRemoveDevice:
		if !ValidUserName(m.User) {
			return fmt.Errorf("protocol: remove_device: bad user name: %w", CodeBadRequest)
		}
		if _, err := ParseDeviceID(m.Device); err != nil {
			return fmt.Errorf("protocol: remove_device: %w", err)
		}
		if len(m.Sig) == 0 || len(m.Sig) > MaxSignature {
			return fmt.Errorf("protocol: remove_device: signature missing or too large: %w", CodeBadRequest)
		}
	default:
		return fmt.Errorf("protocol: unknown request type %q: %w", m.Type, CodeBadRequest)
	}
	return nil
}

// validStreamID checks a request's stream id: a non-nil UUID in canonical
// lower-case form, or absent when optional.
func validStreamID(m *Message, optional bool) error {
	if optional && m.Stream == "" {
		return nil
	}
	if u, err := uuid.Parse(m.Stream); err != nil || u.String() != m.Stream || u == uuid.Nil {
		return fmt.Errorf("protocol: %s: stream must be a non-nil UUID in canonical lower-case form: %w", m.Type, CodeBadRequest)
	}
	return nil
}

// validateStream checks a stream or conv_stream request: its room or
// conversation, stream id, event, reason (only on end) and text: a body
// of at most MaxBody bytes of UTF-8 (stream; none on stop) or a record of
// at most MaxConvRecord bytes (conv_stream; only on delta and end).
func validateStream(m *Message) error {
	if m.Type == MsgStream {
		if !ValidName(m.Room) {
			return fmt.Errorf("protocol: stream: bad room name: %w", CodeBadRequest)
		}
		if m.Conv != "" || len(m.Record) != 0 {
			return fmt.Errorf("protocol: stream: conv and record go with conv_stream: %w", CodeBadRequest)
		}
	} else {
		if err := validConv(m); err != nil {
			return err
		}
		if m.Room != "" || m.Body != "" {
			return fmt.Errorf("protocol: conv_stream: room and body go with stream: %w", CodeBadRequest)
		}
	}
	if err := validStreamID(m, false); err != nil {
		return err
	}
	if !ValidStreamEvent(m.Event) {
		return fmt.Errorf("protocol: %s: event must be start, delta, end or stop: %w", m.Type, CodeBadRequest)
	}
	if !validStreamReason(m.Reason) || m.Reason != "" && m.Event != StreamEnd {
		return fmt.Errorf("protocol: %s: reason must be done, stop, length or error, and only on end: %w", m.Type, CodeBadRequest)
	}
	if len(m.Body) > MaxBody {
		return fmt.Errorf("protocol: stream: body of %d bytes, limit %d: %w", len(m.Body), MaxBody, CodeTooLarge)
	}
	if !utf8.ValidString(m.Body) || m.Body != "" && m.Event == StreamStop {
		return fmt.Errorf("protocol: stream: body must be UTF-8, and none on stop: %w", CodeBadRequest)
	}
	if len(m.Record) > MaxConvRecord {
		return fmt.Errorf("protocol: conv_stream: record of %d bytes, limit %d: %w", len(m.Record), MaxConvRecord, CodeTooLarge)
	}
	if len(m.Record) != 0 && m.Event != StreamDelta && m.Event != StreamEnd {
		return fmt.Errorf("protocol: conv_stream: a record goes only with delta or end: %w", CodeBadRequest)
	}
	if m.Event == StreamDelta && len(m.Record) == 0 && m.Body == "" {
		return fmt.Errorf("protocol: %s: a delta needs a body (stream) or a record (conv_stream): %w", m.Type, CodeBadRequest)
	}
	return nil
}

// validConv checks a request's conversation id: a UUID in canonical
// lower-case form, not the nil UUID.
func validConv(m *Message) error {
	if u, err := uuid.Parse(m.Conv); err != nil || u.String() != m.Conv || u == uuid.Nil {
		return fmt.Errorf("protocol: %s: conv must be a non-nil UUID in canonical lower-case form: %w", m.Type, CodeBadRequest)
	}
	return nil
}

// validateDevice checks the device fields of register, login, auth and
// passwd: a bundle (register, login with keys) carries its device id in
// keys.device, checked with the bundle, and the request then has no device; otherwise device, if
// present, names the signing device. device_name goes only with a bundle.
func validateDevice(m *Message) error {
	if m.Keys != nil {
		// keys.device is part of the bundle, checked with it (bad_key).
		if m.Device != "" {
			return fmt.Errorf("protocol: %s: device goes in keys.device: %w", m.Type, CodeBadRequest)
		}
		if !ValidDeviceName(m.DeviceName) {
			return fmt.Errorf("protocol: %s: device_name must be at most %d bytes of printable ASCII: %w", m.Type, MaxDeviceName, CodeBadRequest)
		}
		return nil
	}
	if m.DeviceName != "" {
		return fmt.Errorf("protocol: %s: device_name goes only with keys: %w", m.Type, CodeBadRequest)
	}
	if m.Device != "" {
		if _, err := ParseDeviceID(m.Device); err != nil {
			return fmt.Errorf("protocol: %s: %w", m.Type, err)
		}
	}
	return nil
}
