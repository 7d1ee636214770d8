// Package password hashes and verifies account passwords with Argon2id
// (RFC 9106) and stores them in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// where salt and hash are unpadded standard base64.
//
// A [Hasher] bounds how many hash operations run at once, because each one
// allocates its memory cost (19 MiB by default) and a login flood must not
// exhaust the server's memory. Operations that cannot get a slot before their
// context ends fail with [ErrBusy].
//
// Verification recomputes the hash with the parameters stored in the encoded
// string, not the Hasher's own, and reports whether the stored hash is weaker
// than the Hasher's current parameters so that the caller can re-hash the
// password while it has it in hand:
//
//	needsRehash, err := h.Verify(ctx, stored, pw)
//	if err != nil {
//		return err // ErrMismatch, ErrMalformed, ErrBusy, ...
//	}
//	if needsRehash {
//		if upgraded, err := h.Hash(ctx, pw); err == nil {
//			// store upgraded
//		}
//	}
//
// For a login naming an unknown account, call [Hasher.DummyVerify] so the
// response takes as long, and fails the same way, as a wrong password would.
//
// Encoded hashes read from storage are parsed strictly: anything but
// argon2id version 19 with parameters inside fixed bounds is [ErrMalformed].
// In particular the memory cost is capped at 1 GiB so that a tampered
// database row cannot make a single verification allocate without limit.
package password
