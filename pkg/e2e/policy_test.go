package e2e

import "testing"

// TestKeyPolicy: rotate when the devices changed (added, removed, new
// keys), when asked, and after MaxMessages (default 1000); keep otherwise.
func TestKeyPolicy(t *testing.T) {
	w := newWorld(t)
	key := w.keys["env-v1-gcm"] // wrapped to all four devices
	all := publics(t, allFour...)
	newKeys := publics(t, allFour...)
	newKeys[3].Encryption = dev(t, "bob-1").public.Encryption // bob-2 with another key
	added := append(publics(t, allFour...), manyDevices(dev(t, "bob-1").public, 1)...)
	for _, c := range []struct {
		name   string
		policy KeyPolicy
		usage  KeyUsage
		want   RotateReason
	}{
		{"fresh", KeyPolicy{}, KeyUsage{Messages: 0, Devices: all}, KeepKey},
		{"999 messages", KeyPolicy{}, KeyUsage{Messages: 999, Devices: all}, KeepKey},
		{"1000 messages", KeyPolicy{}, KeyUsage{Messages: 1000, Devices: all}, RotateMessages},
		{"custom limit", KeyPolicy{MaxMessages: 10}, KeyUsage{Messages: 10, Devices: all}, RotateMessages},
		{"requested", KeyPolicy{}, KeyUsage{Devices: all, Requested: true}, RotateRequested},
		{"device removed", KeyPolicy{}, KeyUsage{Devices: publics(t, "alice-1", "bob-1", "bob-2")}, RotateDevices},
		{"device added", KeyPolicy{}, KeyUsage{Devices: added}, RotateDevices},
		{"device with new keys", KeyPolicy{}, KeyUsage{Devices: newKeys}, RotateDevices},
		{"devices first", KeyPolicy{}, KeyUsage{Messages: 5000, Requested: true, Devices: publics(t, "alice-1", "bob-1")}, RotateDevices},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.policy.Check(key, c.usage)
			wantErr(t, err, nil)
			if got != c.want {
				t.Fatalf("%v, want %v", got, c.want)
			}
		})
	}
	_, err := KeyPolicy{}.Check(key, KeyUsage{Devices: publics(t, "alice-1")})
	wantErr(t, err, ErrBadDevice)
	// The key of version 2 (without alice-2) matches that device set.
	got, err := KeyPolicy{}.Check(w.keys["env-v2-cbc"], KeyUsage{Devices: publics(t, "bob-2", "alice-1", "bob-1")})
	wantErr(t, err, nil)
	if got != KeepKey {
		t.Fatalf("%v for the devices key version 2 was made for", got)
	}
}
