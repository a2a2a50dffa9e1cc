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

// MAC is Poly1305 computed in parts, for a caller (internal/secretbox)
// that has another kernel advance the accumulator over the middle of the
// message (internal/salsa20.XORKeyStreamMAC): Init, then Blocks, Acc's
// updates and Blocks again over consecutive whole 16-byte blocks, then Sum
// over the rest. The zero value is not usable; Init it.
type MAC struct {
	acc [5]uint64 // h0, h1, h2, r0, r1
	s   [2]uint64
}

// Init keys m with the one-time key and clears its accumulator.
func (m *MAC) Init(key *[32]byte) {
	var st macState
	initialize(key, &st)
	m.acc = [5]uint64{0, 0, 0, st.r[0], st.r[1]}
	m.s = st.s
}

func (m *MAC) state() macState {
	return macState{h: [3]uint64(m.acc[:3]), r: [2]uint64(m.acc[3:]), s: m.s}
}

// Blocks adds msg, a whole number of 16-byte blocks, to the message.
func (m *MAC) Blocks(msg []byte) {
	if len(msg)%TagSize != 0 {
		panic("poly1305: MAC.Blocks of a partial block")
	}
	st := m.state()
	update(&st, msg)
	copy(m.acc[:3], st.h[:])
}

// Acc is the accumulator and the clamped key, h0, h1, h2, r0, r1: another
// kernel's block updates go through it.
func (m *MAC) Acc() *[5]uint64 { return &m.acc }

// Sum adds tail, the message's last bytes, and writes the tag into out.
func (m *MAC) Sum(out *[TagSize]byte, tail []byte) {
	st := m.state()
	update(&st, tail)
	finalize(out, &st.h, &st.s)
}
