package poly1305

import (
	"crypto/subtle"

	"golang.org/x/crypto/poly1305" //lint:ignore SA1019 the oracle and the short-message path; golang.org/x/crypto/internal/poly1305 is not importable
)

// TagSize is the size of a Poly1305 tag.
const TagSize = 16

// useAsm selects the assembly kernel. It is set at start-up from the CPU's
// features; tests turn it off to cover the fallback.
var useAsm = hasAsm

// minAsm is the shortest message the vector kernel is used for: below it,
// preparing r^2, r^3 and r^4 costs more than it saves.
const minAsm = 2048

// Sum writes the Poly1305 tag of msg under the one-time key into out, as
// golang.org/x/crypto/poly1305.Sum does.
func Sum(out *[TagSize]byte, msg []byte, key *[32]byte) {
	if useAsm && len(msg) >= minAsm {
		sumAsm(out, msg, key)
		return
	}
	poly1305.Sum(out, msg, key)
}

// Verify reports whether tag is msg's tag under the one-time key, in
// constant time.
func Verify(tag *[TagSize]byte, msg []byte, key *[32]byte) bool {
	var sum [TagSize]byte
	Sum(&sum, msg, key)
	return subtle.ConstantTimeCompare(tag[:], sum[:]) == 1
}
