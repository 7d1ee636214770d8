package protocol_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/secure-messenger/messenger/pkg/e2e"
	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestDeviceBundle: a device's bundle binds its id; a version-1 bundle
// passes only VerifyListed; the fingerprint is pkg/e2e's.
func TestDeviceBundle(t *testing.T) {
	signing, encryption := rsaKeys(t)
	id := uuid.MustParse("a11ce000-0000-4000-8000-000000000001")
	kb, err := protocol.NewDeviceBundle("alice", id, signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, verify := range map[string]func(*protocol.KeyBundle, string) (any, uuid.UUID, error){
		"VerifyDevice": func(k *protocol.KeyBundle, u string) (any, uuid.UUID, error) { return k.VerifyDevice(u) },
		"VerifyListed": func(k *protocol.KeyBundle, u string) (any, uuid.UUID, error) { return k.VerifyListed(u) },
	} {
		if _, got, err := verify(kb, "alice"); err != nil || got != id {
			t.Errorf("%s = %s, %v; want %s", name, got, err, id)
		}
	}
	other := *kb
	other.Device = uuid.New().String()
	_, _, err = other.VerifyDevice("alice")
	wantCode(t, err, protocol.CodeBadSignature)
	_, _, err = other.VerifyListed("alice")
	wantCode(t, err, protocol.CodeBadSignature)
	_, _, err = kb.VerifyDevice("bob")
	wantCode(t, err, protocol.CodeBadSignature)
	for _, bad := range []string{"", "A11CE000-0000-4000-8000-000000000001", uuid.Nil.String(), "x"} {
		b := *kb
		b.Device = bad
		_, _, err = b.VerifyDevice("alice")
		wantCode(t, err, protocol.CodeBadKey)
	}

	// A bundle of version 1 with a device id: listed (a migrated device),
	// never accepted for publishing.
	v1, err := protocol.NewKeyBundle("alice", signing, &encryption.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v1.Device = id.String()
	_, _, err = v1.VerifyDevice("alice")
	wantCode(t, err, protocol.CodeBadSignature)
	if _, got, err := v1.VerifyListed("alice"); err != nil || got != id {
		t.Errorf("VerifyListed(v1) = %s, %v", got, err)
	}
	// And a v2 self-signature does not pass as v1.
	if _, err := kb.Verify("alice"); err == nil {
		t.Error("a device bundle's self-signature verified as version 1")
	}

	d := e2e.Device{User: "alice", ID: id, Signing: kb.Signing, Encryption: kb.Encryption}
	if got := protocol.DeviceFingerprint("alice", id, kb.Signing, kb.Encryption); got != d.Fingerprint() {
		t.Errorf("DeviceFingerprint %s, e2e's %s", got, d.Fingerprint())
	}
}

func TestValidateDeviceFields(t *testing.T) {
	base := func(typ string, f func(m *protocol.Message)) *protocol.Message {
		m := &protocol.Message{Type: typ, ID: uuid.NewString(), TS: 1, User: "alice", Password: "pw", Sig: []byte{1}}
		f(m)
		return m
	}
	id := uuid.NewString()
	cases := []struct {
		name string
		m    *protocol.Message
		ok   bool
	}{
		{"auth names a device", base(protocol.MsgAuth, func(m *protocol.Message) { m.Password, m.Device = "", id }), true},
		{"auth without device", base(protocol.MsgAuth, func(m *protocol.Message) { m.Password = "" }), true},
		{"auth upper-case device", base(protocol.MsgAuth, func(m *protocol.Message) { m.Password, m.Device = "", "A"+id[1:] }), false},
		{"auth nil device", base(protocol.MsgAuth, func(m *protocol.Message) { m.Password, m.Device = "", uuid.Nil.String() }), false},
		{"auth device_name", base(protocol.MsgAuth, func(m *protocol.Message) { m.Password, m.DeviceName = "", "laptop" }), false},
		{"login keys and device", base(protocol.MsgLogin, func(m *protocol.Message) { m.Keys, m.Device = &protocol.KeyBundle{}, id }), false},
		{"login keys and name", base(protocol.MsgLogin, func(m *protocol.Message) { m.Keys, m.DeviceName = &protocol.KeyBundle{}, "my laptop" }), true},
		{"register control in name", base(protocol.MsgRegister, func(m *protocol.Message) { m.Keys, m.DeviceName = &protocol.KeyBundle{}, "a\nb" }), false},
		{"devices", base(protocol.MsgDevices, func(*protocol.Message) {}), true},
		{"remove_device", base(protocol.MsgRemoveDevice, func(m *protocol.Message) { m.Device = id }), true},
		{"remove_device without device", base(protocol.MsgRemoveDevice, func(*protocol.Message) {}), false},
		{"remove_device without sig", base(protocol.MsgRemoveDevice, func(m *protocol.Message) { m.Device, m.Sig = id, nil }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := protocol.ValidateRequest(c.m)
			if c.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !c.ok {
				wantCode(t, err, protocol.CodeBadRequest)
			}
		})
	}
}
