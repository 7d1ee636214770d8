package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Devices. A user has one or more devices (the CLI profile is one, each
// browser another), each with its own signing and encryption keys. They
// supersede key sets: the server keeps its directory in devices, and the
// key_sets table holds only what was published before devices existed
// (migration 0004 made each user's current key set the user's first
// device, with the user's id as device id).

// Device limits and errors.
const (
	// MaxDevicesPerUser bounds a user's current devices, so that the
	// devices of two users fit one end-to-end key envelope (e2e.MaxRecipients
	// is 64) and a directory answer listing them, with 4096-bit keys, fits
	// one record.
	MaxDevicesPerUser = 16
	// MaxDeviceNameLen is the longest device label, in bytes.
	MaxDeviceNameLen = 64
)

var (
	// ErrLimit reports that a user already has MaxDevicesPerUser devices.
	ErrLimit = errors.New("store: limit reached")
	// ErrLastDevice reports an attempt to remove a user's only current
	// device: an account always keeps one.
	ErrLastDevice = errors.New("store: last device")
)

// Device is one device of a user: its public keys as published.
type Device struct {
	// ID is chosen by the client (a UUID); unique across every user and
	// never reused, removed devices included. Required.
	ID uuid.UUID
	// UserID is the owner.
	UserID uuid.UUID
	// Name is an optional label, 0..MaxDeviceNameLen bytes of printable
	// ASCII.
	Name string
	// SigningKey, EncryptionKey and SelfSignature follow the KeySet rules;
	// the store does not parse them.
	SigningKey    []byte
	EncryptionKey []byte
	SelfSignature []byte
	// CreatedAt is set by AddDevice when zero; UTC, microseconds.
	CreatedAt time.Time
	// RemovedAt is zero while the device is current; set by RemoveDevice.
	RemovedAt time.Time
}

// DeviceStore is the devices part of Store.
type DeviceStore interface {
	// CreateUserWithDevice creates u and its first device d (d.UserID is
	// set to the new user's) in one transaction: both are stored or
	// neither. ErrConflict if the user name or the device id is taken.
	CreateUserWithDevice(ctx context.Context, u User, d Device) (User, Device, error)
	// AddDevice stores a new current device of d.UserID and returns it
	// with CreatedAt filled in. ErrConflict if the id was ever used (by
	// anyone), ErrNotFound if the user does not exist, ErrLimit if the user
	// already has MaxDevicesPerUser current devices. It leaves the user's
	// Generation alone: adding a device revokes nothing.
	AddDevice(ctx context.Context, d Device) (Device, error)
	// RemoveDevice marks the user's current device deviceID removed, in
	// one transaction, and returns the user's Generation, which it leaves
	// alone: the server revokes the removed device's sessions only
	// (internal/server/revoke.go), not the user's other devices'. ErrNotFound if
	// deviceID is not a current device of userID; ErrLastDevice if it is
	// the user's only current device.
	RemoveDevice(ctx context.Context, userID, deviceID uuid.UUID) (generation int64, err error)
	// DevicesOf returns the user's current devices, oldest first (ties by
	// id); empty, not an error, for an unknown user or one without devices.
	DevicesOf(ctx context.Context, userID uuid.UUID) ([]Device, error)
	// DeviceByID returns a device, current or removed; ErrNotFound if none
	// has that id.
	DeviceByID(ctx context.Context, id uuid.UUID) (Device, error)
}

// prepareDevice validates d and fills in CreatedAt.
func prepareDevice(d Device) (Device, error) {
	if d.ID == uuid.Nil {
		return Device{}, &FieldError{Field: "device.id", Reason: "must not be the nil UUID"}
	}
	if len(d.Name) > MaxDeviceNameLen {
		return Device{}, &FieldError{Field: "device.name", Reason: fmt.Sprintf("must be 0..%d bytes", MaxDeviceNameLen)}
	}
	for _, c := range []byte(d.Name) {
		if c < 0x20 || c > 0x7e {
			return Device{}, &FieldError{Field: "device.name", Reason: "must be printable ASCII"}
		}
	}
	for _, f := range []struct {
		field string
		b     []byte
		max   int
	}{
		{"device.signing_key", d.SigningKey, MaxPublicKeyLen},
		{"device.encryption_key", d.EncryptionKey, MaxPublicKeyLen},
		{"device.self_signature", d.SelfSignature, MaxSelfSignatureLen},
	} {
		if err := checkBytes(f.field, f.b, f.max); err != nil {
			return Device{}, err
		}
	}
	d.CreatedAt = stamp(d.CreatedAt)
	d.RemovedAt = time.Time{}
	return d, nil
}

// prepareUserWithDevice validates u and d for CreateUserWithDevice, in
// both backends, and makes d the new user's.
func prepareUserWithDevice(u User, d Device) (User, Device, error) {
	u, err := prepareUser(u)
	if err != nil {
		return User{}, Device{}, fmt.Errorf("store: create user with device: %w", err)
	}
	d.UserID = u.ID
	if d, err = prepareDevice(d); err != nil {
		return User{}, Device{}, fmt.Errorf("store: create user with device: %w", err)
	}
	return u, d, nil
}
