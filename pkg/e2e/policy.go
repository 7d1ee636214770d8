package e2e

import "fmt"

// DefaultMaxMessages is KeyPolicy's default bound on the messages sealed
// under one key version.
const DefaultMaxMessages = 1000

// KeyPolicy says when a conversation's key must rotate: a new key version,
// made by any device of either user with NewKeyEnvelope and
// ConversationKey.NextVersion.
type KeyPolicy struct {
	// MaxMessages is how many messages (sent and received, by all
	// devices, as far as this device has seen) one key version may seal;
	// zero means DefaultMaxMessages.
	MaxMessages uint64
}

// KeyUsage is what a device knows about the current key version when it
// asks KeyPolicy whether to rotate.
type KeyUsage struct {
	// Messages is the number of messages seen under the key version.
	Messages uint64
	// Devices are the current devices of both users, as the caller looked
	// them up and pinned them.
	Devices []Device
	// Requested is set when a user asked for a new key.
	Requested bool
}

// RotateReason says why a key must rotate.
type RotateReason int

// The reasons, in the order KeyPolicy.Check tests them.
const (
	// KeepKey: no reason to rotate.
	KeepKey RotateReason = iota
	// RotateDevices: the devices of either user differ from those the key
	// was wrapped to (one added or removed, or new keys): a removed device
	// must get no new messages, an added one needs a key.
	RotateDevices
	// RotateRequested: a user asked for it.
	RotateRequested
	// RotateMessages: the key version has sealed MaxMessages messages.
	RotateMessages
)

// String names the reason.
func (r RotateReason) String() string {
	switch r {
	case KeepKey:
		return "keep"
	case RotateDevices:
		return "devices changed"
	case RotateRequested:
		return "requested"
	case RotateMessages:
		return "message limit"
	}
	return fmt.Sprintf("RotateReason(%d)", int(r))
}

// Check returns why key must rotate, or KeepKey. The device set is
// compared through DeviceSetDigest with the digest the key's envelope
// carries; an unusable device list is an error (ErrBadDevice, ErrBadKey).
func (p KeyPolicy) Check(key *ConversationKey, u KeyUsage) (RotateReason, error) {
	digest, err := DeviceSetDigest(u.Devices)
	if err != nil {
		return KeepKey, err
	}
	max := p.MaxMessages
	if max == 0 {
		max = DefaultMaxMessages
	}
	switch {
	case digest != key.DeviceSetDigest():
		return RotateDevices, nil
	case u.Requested:
		return RotateRequested, nil
	case u.Messages >= max:
		return RotateMessages, nil
	}
	return KeepKey, nil
}
