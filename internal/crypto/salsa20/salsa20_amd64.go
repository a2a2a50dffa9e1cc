//go:build amd64 && !purego && gc

package salsa20

import (
	"crypto/subtle"

	"golang.org/x/sys/cpu"
)

var hasAsm = cpu.X86.HasAVX2

// hasVL reports the AVX-512VL form of the eight-block kernel (blocks8VL):
// VPROLD on YMM registers, which x/sys/cpu reports only where the OS
// saves the AVX-512 state. useVL selects it; tests turn it off to cover
// blocks8 on the same CPU.
var hasVL = hasAsm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

var useVL = hasVL

// blocks8 writes in XOR the key stream of counter and key into out, n bytes
// (a positive multiple of 512), eight blocks per step. It reads counter and
// does not change it.
//
//go:noescape
func blocks8(out, in *byte, n uint64, counter *[16]byte, key *[32]byte)

// blocks8VL is blocks8 with AVX-512VL's rotate (see hasVL).
//
//go:noescape
func blocks8VL(out, in *byte, n uint64, counter *[16]byte, key *[32]byte)

// steps8 is blocks8VL where the CPU has it, else blocks8.
func steps8(out, in *byte, n uint64, counter *[16]byte, key *[32]byte) {
	if useVL {
		blocks8VL(out, in, n, counter, key)
		return
	}
	blocks8(out, in, n, counter, key)
}

// blocks2 writes the two key stream blocks of counter and key (the blocks
// numbered counter[8:16] and one more) into ks.
//
//go:noescape
func blocks2(ks *[128]byte, counter *[16]byte, key *[32]byte)

// blocks2x2 writes the two first key stream blocks of c0 and key into
// ks[0:128] and those of c1 into ks[128:256].
//
//go:noescape
func blocks2x2(ks *[256]byte, c0, c1 *[16]byte, key *[32]byte)

// xorKeyStreamAsm is XORKeyStream on the AVX2 kernels; len(out) == len(in) > 0.
func xorKeyStreamAsm(out, in []byte, counter *[16]byte, key *[32]byte) {
	ctr := *counter
	if n := len(in) &^ 511; n > 0 {
		steps8(&out[0], &in[0], uint64(n), &ctr, key)
		addBlocks(&ctr, uint64(n/64))
		in, out = in[n:], out[n:]
	}
	if len(in) > 128 {
		// Up to 7 more blocks: one eight-block step into a buffer costs
		// less than two or more two-block calls.
		var ks [512]byte
		steps8(&ks[0], &ks[0], 512, &ctr, key)
		subtle.XORBytes(out, in, ks[:])
		return
	}
	if len(in) > 0 {
		var ks [128]byte
		blocks2(&ks, &ctr, key)
		subtle.XORBytes(out, in, ks[:])
	}
}
