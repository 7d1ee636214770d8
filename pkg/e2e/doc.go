// Package e2e is the end-to-end envelope of direct conversations: what a
// device of user A and a device of user B exchange through the server so
// that the server relays and stores only ciphertext, IVs and signatures.
//
// docs/e2e.md describes the format byte by byte, precisely enough for the
// browser (WebCrypto) and the bot to implement it; the two must agree,
// and the golden vectors in testdata/golden/e2e_vectors.json hold them to
// it.
//
// The parts:
//
//   - Devices (keys.go). A user has devices; each has an id, an RSA-PSS
//     signing key and an RSA-OAEP encryption key (Device, LocalDevice),
//     a device fingerprint, and the user's fingerprint over all of them.
//   - Key envelopes (envelope.go). One device creates a conversation key
//     per key version, wraps it to every current device of both users and
//     signs the envelope (NewKeyEnvelope); a device opens its own stanza
//     after checking the structure, the stanza count and the signature
//     (ParseKeyEnvelope, KeyEnvelope.Open). A Keyring holds the opened
//     key versions of a conversation.
//   - Records (record.go). A message is sealed under a key version with a
//     fresh IV, its header as additional data, and signed by the sender's
//     device (Seal); Open checks and decrypts it. A ReplayGuard
//     (replay.go) refuses a message id or a counter seen before.
//   - KeyPolicy (policy.go) says when to rotate; NewSafetyNumber
//     (safety.go) what two users compare; Pins (pins.go) remembers
//     contacts' devices on first use and reports changes.
//
// The package is a pure library: it takes keys, it never fetches them;
// the caller looks devices up in the directory, pins them, and passes
// them in. It uses no network and no store. Every error wraps one of the
// sentinel errors of errors.go.
package e2e
