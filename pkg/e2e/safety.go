package e2e

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"strings"
)

// ContextSafetyNumber starts the input of a safety number.
const ContextSafetyNumber = "messenger v1 safety number"

// SafetyNumberGroups is the number of five-digit groups of a safety number.
const SafetyNumberGroups = 12

// SafetyNumber is what two users compare, out of band, to know that each
// sees the other's devices as they are: 12 groups of 5 decimal digits.
type SafetyNumber [SafetyNumberGroups]uint32

// NewSafetyNumber derives the safety number of two users from their
// UserFingerprints; the order of the arguments does not matter:
//
//	h = SHA-512("messenger v1 safety number" ‖ 0x00 ‖ fp_1 ‖ fp_2)
//
// where fp_1, fp_2 are the two fingerprints in ascending byte order; group
// i (0 … 11) is the 40-bit big-endian integer h[5i : 5i+5] modulo 100000.
// Each side computes it from its own pinned view of both users' devices:
// the numbers match only if the views do. A substitute key set would need
// a second preimage of about 199 bits (12 × log2(100000)), so the plain
// hash needs no iteration.
func NewSafetyNumber(a, b Fingerprint) SafetyNumber {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	h := sha512.New()
	h.Write([]byte(ContextSafetyNumber))
	h.Write([]byte{0})
	h.Write(a[:])
	h.Write(b[:])
	sum := h.Sum(nil)
	var n SafetyNumber
	for i := range n {
		var v uint64
		for _, c := range sum[5*i : 5*i+5] {
			v = v<<8 | uint64(c)
		}
		n[i] = uint32(v % 100000)
	}
	return n
}

// String returns the groups, each as five digits (leading zeros kept),
// separated by single spaces: "12345 67890 … 24680".
func (n SafetyNumber) String() string {
	var sb strings.Builder
	for i, g := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%05d", g)
	}
	return sb.String()
}

// Lines returns the groups as three lines of four, the display form.
func (n SafetyNumber) Lines() [3]string {
	f := strings.Fields(n.String())
	return [3]string{strings.Join(f[0:4], " "), strings.Join(f[4:8], " "), strings.Join(f[8:12], " ")}
}
