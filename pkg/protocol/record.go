package protocol

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Suite identifies a record-layer cipher suite.
type Suite uint16

// The suites. GCM is preferred; CBC-HMAC exists for peers that ask for it.
const (
	// SuiteAES256GCM: AES-256-GCM, nonce = IV XOR sequence number.
	SuiteAES256GCM Suite = 0x0001
	// SuiteAES256CBCHMAC: AES-256-CBC with a random IV per record, then
	// HMAC-SHA256 over header, IV and ciphertext on a separate key
	// (encrypt-then-MAC).
	SuiteAES256CBCHMAC Suite = 0x0002
)

// SupportedSuites lists the suites this package implements, preferred first.
var SupportedSuites = []Suite{SuiteAES256GCM, SuiteAES256CBCHMAC}

// String names the suite.
func (s Suite) String() string {
	switch s {
	case SuiteAES256GCM:
		return "AES-256-GCM"
	case SuiteAES256CBCHMAC:
		return "AES-256-CBC-HMAC-SHA256"
	}
	return fmt.Sprintf("suite(%#04x)", uint16(s))
}

// RecordHeaderSize is the type byte plus the 8-byte sequence number.
const RecordHeaderSize = 1 + 8

// RecordLayer seals or opens the records of one direction. Sequence numbers
// start at 0 and go up by one per record; a record whose number is not the
// next one is rejected with CodeBadSequence, so a replayed, reordered or
// dropped record ends the session. A RecordLayer is not safe for
// concurrent use: one goroutine seals, one opens.
type RecordLayer struct {
	seq uint64
	// GCM
	aead cipher.AEAD
	iv   [12]byte
	// CBC-HMAC
	block cipher.Block
	mac   hash.Hash
	// scratch for AppendSeal, so that sealing into a reused buffer
	// allocates nothing (a RecordLayer is used by one goroutine)
	sealHdr   [RecordHeaderSize]byte
	sealNonce [12]byte
}

// NewGCMRecordLayer returns an AES-256-GCM record layer.
func NewGCMRecordLayer(key, iv []byte) (*RecordLayer, error) {
	if len(key) != 32 || len(iv) != 12 {
		return nil, errors.New("protocol: gcm record layer: want a 32-byte key and a 12-byte iv")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("protocol: gcm record layer: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("protocol: gcm record layer: %w", err)
	}
	r := &RecordLayer{aead: a}
	copy(r.iv[:], iv)
	return r, nil
}

// NewCBCRecordLayer returns an AES-256-CBC + HMAC-SHA256 record layer.
func NewCBCRecordLayer(encKey, macKey []byte) (*RecordLayer, error) {
	if len(encKey) != 32 || len(macKey) != 32 {
		return nil, errors.New("protocol: cbc record layer: want two 32-byte keys")
	}
	b, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("protocol: cbc record layer: %w", err)
	}
	return &RecordLayer{block: b, mac: hmac.New(sha256.New, macKey)}, nil
}

// Seq returns the sequence number of the next record.
func (r *RecordLayer) Seq() uint64 { return r.seq }

func (r *RecordLayer) nonce(seq uint64) []byte {
	n := r.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	subtle.XORBytes(n[4:], n[4:], s[:])
	return n[:]
}

// Seal encrypts plaintext as the next record and returns the whole frame,
// in a new slice.
func (r *RecordLayer) Seal(plaintext []byte) ([]byte, error) {
	return r.AppendSeal(nil, plaintext)
}

// AppendSeal encrypts plaintext as the next record and appends the whole
// frame to dst, returning the extended slice (as append does). dst must
// not overlap plaintext. With a dst of enough capacity it allocates
// nothing, so a writer can seal into one reused buffer. On error nothing
// is appended and the sequence number does not move.
func (r *RecordLayer) AppendSeal(dst, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return dst, fmt.Errorf("protocol: seal %d bytes: %w", len(plaintext), CodeTooLarge)
	}
	if r.seq == ^uint64(0) {
		return dst, fmt.Errorf("protocol: sequence numbers exhausted: %w", CodeBadSequence)
	}
	seq := r.seq
	r.sealHdr[0] = TypeRecord
	binary.BigEndian.PutUint64(r.sealHdr[1:], seq)
	hdr := r.sealHdr[:]
	var out []byte
	if r.aead != nil {
		out = grow(dst, len(hdr)+len(plaintext)+r.aead.Overhead())
		out = append(out, hdr...)
		r.sealNonce = r.iv
		var s [8]byte
		binary.BigEndian.PutUint64(s[:], seq)
		subtle.XORBytes(r.sealNonce[4:], r.sealNonce[4:], s[:])
		out = r.aead.Seal(out, r.sealNonce[:], plaintext, hdr)
	} else {
		pad := aes.BlockSize - len(plaintext)%aes.BlockSize
		n := len(hdr) + aes.BlockSize + len(plaintext) + pad
		out = grow(dst, n+sha256.Size)[:len(dst)+n]
		frame := out[len(dst):]
		copy(frame, hdr)
		iv := frame[len(hdr) : len(hdr)+aes.BlockSize]
		if _, err := rand.Read(iv); err != nil {
			return dst, fmt.Errorf("protocol: record iv: %w", err)
		}
		body := frame[len(hdr)+aes.BlockSize:]
		copy(body, plaintext)
		for i := len(plaintext); i < len(body); i++ {
			body[i] = byte(pad)
		}
		cipher.NewCBCEncrypter(r.block, iv).CryptBlocks(body, body)
		r.mac.Reset()
		r.mac.Write(frame)
		out = r.mac.Sum(out)
	}
	r.seq++
	return out, nil
}

// grow returns b with room for n more bytes: b itself if it has them, else
// a copy with exactly that capacity.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	out := make([]byte, len(b), len(b)+n)
	copy(out, b)
	return out
}

// Open authenticates and decrypts the next record frame. Errors are
// CodeMalformed (not a record, too short), CodeBadSequence (not the next
// sequence number) or CodeBadRecord (authentication failed); after any
// error the session must end.
func (r *RecordLayer) Open(frame []byte) ([]byte, error) {
	if len(frame) < RecordHeaderSize || frame[0] != TypeRecord {
		return nil, fmt.Errorf("protocol: open record: %w", CodeMalformed)
	}
	if len(frame) > MaxFrameSize {
		return nil, fmt.Errorf("protocol: open record: %w", CodeFrameTooLarge)
	}
	seq := binary.BigEndian.Uint64(frame[1:RecordHeaderSize])
	if seq != r.seq {
		return nil, fmt.Errorf("protocol: record %d, want %d: %w", seq, r.seq, CodeBadSequence)
	}
	hdr, body := frame[:RecordHeaderSize], frame[RecordHeaderSize:]
	var pt []byte
	if r.aead != nil {
		var err error
		pt, err = r.aead.Open(nil, r.nonce(seq), body, hdr)
		if err != nil {
			return nil, fmt.Errorf("protocol: open record: %w", CodeBadRecord)
		}
	} else {
		if len(body) < 2*aes.BlockSize+sha256.Size || (len(body)-sha256.Size)%aes.BlockSize != 0 {
			return nil, fmt.Errorf("protocol: open record: length: %w", CodeBadRecord)
		}
		macStart := len(frame) - sha256.Size
		r.mac.Reset()
		r.mac.Write(frame[:macStart])
		if !hmac.Equal(r.mac.Sum(nil), frame[macStart:]) {
			return nil, fmt.Errorf("protocol: open record: %w", CodeBadRecord)
		}
		iv := body[:aes.BlockSize]
		pt = make([]byte, macStart-RecordHeaderSize-aes.BlockSize)
		cipher.NewCBCDecrypter(r.block, iv).CryptBlocks(pt, body[aes.BlockSize:len(body)-sha256.Size])
		// The MAC already authenticated the padding: a bad one is a sender bug.
		pad := int(pt[len(pt)-1])
		if pad == 0 || pad > aes.BlockSize {
			return nil, fmt.Errorf("protocol: open record: padding: %w", CodeBadRecord)
		}
		for _, b := range pt[len(pt)-pad:] {
			if int(b) != pad {
				return nil, fmt.Errorf("protocol: open record: padding: %w", CodeBadRecord)
			}
		}
		pt = pt[:len(pt)-pad]
	}
	if len(pt) > MaxPlaintext {
		return nil, fmt.Errorf("protocol: open record: %w", CodeFrameTooLarge)
	}
	r.seq++
	return pt, nil
}
