package poly1305

import "crypto/subtle"

// MAC computes a Poly1305 tag over a message written in pieces, the
// streaming form of Sum: Init with the one-time key, Write the message in
// pieces of any length, then Sum or Verify, which also clear it. The tag
// does not depend on how the message is split. Pieces of 64 bytes or more
// go through the AVX2 kernel where Sum would use it (any split: a piece's
// 16-byte blocks are folded into the accumulator as h·r^k plus the
// kernel's polynomial of the k blocks); the rest, and every CPU without
// it, run the 64-bit code of generic.go.
//
// The zero MAC is not usable; a MAC is not safe for concurrent use, and
// it must not be copied once written to (it holds the key).
type MAC struct {
	st  macState
	buf [TagSize]byte // a block not yet complete
	n   int           // bytes in buf
	vec vecState      // the AVX2 kernel's powers of r, made on first use
}

// minVec is the shortest run of whole blocks Write gives the AVX2 kernel:
// one group of four.
const minVec = 64

// Init starts a MAC under the one-time key, forgetting any message it
// was computing.
func (m *MAC) Init(key *[32]byte) {
	m.Clear()
	initialize(key, &m.st)
}

// Write adds p to the message.
func (m *MAC) Write(p []byte) {
	if m.n > 0 {
		k := copy(m.buf[m.n:], p)
		m.n += k
		p = p[k:]
		if m.n < TagSize {
			return
		}
		update(&m.st, m.buf[:])
		m.n = 0
	}
	if full := len(p) &^ (TagSize - 1); full > 0 {
		done := 0
		if useAsm && full >= minVec {
			done = full &^ 63
			m.vec.blocks(&m.st, p[:done])
		}
		update(&m.st, p[done:full])
		p = p[full:]
	}
	m.n = copy(m.buf[:], p)
}

// Sum writes the tag of the message written since Init into out and
// clears m.
func (m *MAC) Sum(out *[TagSize]byte) {
	if m.n > 0 {
		update(&m.st, m.buf[:m.n])
	}
	finalize(out, &m.st.h, &m.st.s)
	m.Clear()
}

// Verify reports, in constant time, whether tag is the tag of the message
// written since Init, and clears m.
func (m *MAC) Verify(tag *[TagSize]byte) bool {
	var sum [TagSize]byte
	m.Sum(&sum)
	ok := subtle.ConstantTimeCompare(tag[:], sum[:]) == 1
	clear(sum[:])
	return ok
}

// Clear erases the key and the state (as Sum and Verify do).
func (m *MAC) Clear() {
	m.st = macState{}
	clear(m.buf[:])
	m.n = 0
	m.vec.clear()
}
