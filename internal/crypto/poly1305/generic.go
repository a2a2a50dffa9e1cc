// The 64-bit arithmetic in this file (macState, update, finalize) follows
// golang.org/x/crypto/internal/poly1305's sum_generic.go:
//
// Copyright 2018 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package poly1305

import (
	"encoding/binary"
	"math/bits"
)

// macState is Poly1305's accumulator h (130 bits and a few, partially
// reduced: h2 is small), its clamped r and its s.
type macState struct {
	h [3]uint64
	r [2]uint64
	s [2]uint64
}

const (
	rMask0 = 0x0FFFFFFC0FFFFFFF
	rMask1 = 0x0FFFFFFC0FFFFFFC
)

func initialize(key *[32]byte, m *macState) {
	m.r[0] = binary.LittleEndian.Uint64(key[0:8]) & rMask0
	m.r[1] = binary.LittleEndian.Uint64(key[8:16]) & rMask1
	m.s[0] = binary.LittleEndian.Uint64(key[16:24])
	m.s[1] = binary.LittleEndian.Uint64(key[24:32])
}

// update runs h = (h + block) * r for each 16-byte block of msg, the last
// one padded with a 1 byte if it is short.
func update(state *macState, msg []byte) {
	h0, h1, h2 := state.h[0], state.h[1], state.h[2]
	r0, r1 := state.r[0], state.r[1]
	for len(msg) > 0 {
		var c uint64
		if len(msg) >= TagSize {
			h0, c = bits.Add64(h0, binary.LittleEndian.Uint64(msg[0:8]), 0)
			h1, c = bits.Add64(h1, binary.LittleEndian.Uint64(msg[8:16]), c)
			h2 += c + 1
			msg = msg[TagSize:]
		} else {
			var buf [TagSize]byte
			copy(buf[:], msg)
			buf[len(msg)] = 1
			h0, c = bits.Add64(h0, binary.LittleEndian.Uint64(buf[0:8]), 0)
			h1, c = bits.Add64(h1, binary.LittleEndian.Uint64(buf[8:16]), c)
			h2 += c
			msg = nil
		}

		// h * r, with r's clamped top bits keeping every sum in range.
		h0r0hi, h0r0lo := bits.Mul64(h0, r0)
		h1r0hi, h1r0lo := bits.Mul64(h1, r0)
		_, h2r0lo := bits.Mul64(h2, r0)
		h0r1hi, h0r1lo := bits.Mul64(h0, r1)
		h1r1hi, h1r1lo := bits.Mul64(h1, r1)
		_, h2r1lo := bits.Mul64(h2, r1)

		m1lo, c1 := bits.Add64(h1r0lo, h0r1lo, 0)
		m1hi := h1r0hi + h0r1hi + c1
		m2lo, c2 := bits.Add64(h2r0lo, h1r1lo, 0)
		m2hi := h1r1hi + c2

		t0 := h0r0lo
		t1, c := bits.Add64(m1lo, h0r0hi, 0)
		t2, c := bits.Add64(m2lo, m1hi, c)
		t3, _ := bits.Add64(h2r1lo, m2hi, c)

		// Reduce modulo 2^130 - 5: h = t mod 2^130 + 5 * (t >> 130),
		// as (t & ^3 of the top) + (that >> 2).
		h0, h1, h2 = t0, t1, t2&3
		cclo, cchi := t2&^3, t3
		h0, c = bits.Add64(h0, cclo, 0)
		h1, c = bits.Add64(h1, cchi, c)
		h2 += c
		cclo, cchi = cclo>>2|(cchi&3)<<62, cchi>>2
		h0, c = bits.Add64(h0, cclo, 0)
		h1, c = bits.Add64(h1, cchi, c)
		h2 += c
	}
	state.h[0], state.h[1], state.h[2] = h0, h1, h2
}

// finalize writes (h mod 2^130 - 5) + s mod 2^128 into out.
func finalize(out *[TagSize]byte, h *[3]uint64, s *[2]uint64) {
	h0, h1, h2 := h[0], h[1], h[2]
	const (
		p0 = 0xFFFFFFFFFFFFFFFB
		p1 = 0xFFFFFFFFFFFFFFFF
		p2 = 0x0000000000000003
	)
	hMinusP0, b := bits.Sub64(h0, p0, 0)
	hMinusP1, b := bits.Sub64(h1, p1, b)
	_, b = bits.Sub64(h2, p2, b)
	// b is 1 if h < p: keep h, else take h - p.
	h0 = (b-1)&hMinusP0 | ^(b-1)&h0
	h1 = (b-1)&hMinusP1 | ^(b-1)&h1
	h0, c := bits.Add64(h0, s[0], 0)
	h1, _ = bits.Add64(h1, s[1], c)
	binary.LittleEndian.PutUint64(out[0:8], h0)
	binary.LittleEndian.PutUint64(out[8:16], h1)
}

// fe26 is a number modulo 2^130 - 5 in five 26-bit limbs (each a little
// over 26 bits at most), the vector kernel's representation.
type fe26 [5]uint64

const mask26 = 1<<26 - 1

// fe26FromR splits the clamped r into limbs.
func fe26FromR(r0, r1 uint64) fe26 {
	return fe26{
		r0 & mask26,
		(r0 >> 26) & mask26,
		(r0>>52 | r1<<12) & mask26,
		(r1 >> 14) & mask26,
		r1 >> 40,
	}
}

// fe26From64 splits the 64-bit accumulator h (h[2] small) into limbs.
func fe26From64(h *[3]uint64) fe26 {
	return fe26{
		h[0] & mask26,
		(h[0] >> 26) & mask26,
		(h[0]>>52 | h[1]<<12) & mask26,
		(h[1] >> 14) & mask26,
		h[1]>>40 | h[2]<<24,
	}
}

// mul returns a * b modulo 2^130 - 5, partially reduced.
func (a *fe26) mul(b *fe26) fe26 {
	s1, s2, s3, s4 := 5*b[1], 5*b[2], 5*b[3], 5*b[4]
	d0 := a[0]*b[0] + a[1]*s4 + a[2]*s3 + a[3]*s2 + a[4]*s1
	d1 := a[0]*b[1] + a[1]*b[0] + a[2]*s4 + a[3]*s3 + a[4]*s2
	d2 := a[0]*b[2] + a[1]*b[1] + a[2]*b[0] + a[3]*s4 + a[4]*s3
	d3 := a[0]*b[3] + a[1]*b[2] + a[2]*b[1] + a[3]*b[0] + a[4]*s4
	d4 := a[0]*b[4] + a[1]*b[3] + a[2]*b[2] + a[3]*b[1] + a[4]*b[0]
	return carry26(d0, d1, d2, d3, d4)
}

// carry26 propagates the carries of five limbs of up to 61 bits: every
// limb ends below 2^26 but the second, below 2^26 + 2^12.
func carry26(d0, d1, d2, d3, d4 uint64) fe26 {
	d1 += d0 >> 26
	d0 &= mask26
	d2 += d1 >> 26
	d1 &= mask26
	d3 += d2 >> 26
	d2 &= mask26
	d4 += d3 >> 26
	d3 &= mask26
	d0 += 5 * (d4 >> 26)
	d4 &= mask26
	d1 += d0 >> 26
	d0 &= mask26
	return fe26{d0, d1, d2, d3, d4}
}

// to64 packs a into the 64-bit accumulator's three words.
func (a *fe26) to64() (h [3]uint64) {
	for i, shift := range [5]uint{0, 26, 52, 78, 104} {
		var lo, hi uint64 // a[i] << shift as a 128-bit number
		if shift < 64 {
			lo, hi = a[i]<<shift, a[i]>>(64-shift)
			if shift == 0 {
				hi = 0
			}
		} else {
			hi = a[i] << (shift - 64)
		}
		var c uint64
		h[0], c = bits.Add64(h[0], lo, 0)
		h[1], c = bits.Add64(h[1], hi, c)
		h[2] += c
		if shift >= 64 {
			h[2] += a[i] >> (128 - shift)
		}
	}
	return h
}
