//go:build amd64 && !purego && gc

package salsa20

import (
	"crypto/subtle"

	"golang.org/x/sys/cpu"
)

var hasAsm = cpu.X86.HasAVX2

// blocks8 writes in XOR the key stream of counter and key into out, n bytes
// (a positive multiple of 512), eight blocks per step. It reads counter and
// does not change it.
//
//go:noescape
func blocks8(out, in *byte, n uint64, counter *[16]byte, key *[32]byte)

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
		blocks8(&out[0], &in[0], uint64(n), &ctr, key)
		addBlocks(&ctr, uint64(n/64))
		in, out = in[n:], out[n:]
	}
	if len(in) > 128 {
		// Up to 7 more blocks: one eight-block step into a buffer costs
		// less than two or more two-block calls.
		var ks [512]byte
		blocks8(&ks[0], &ks[0], 512, &ctr, key)
		subtle.XORBytes(out, in, ks[:])
		return
	}
	if len(in) > 0 {
		var ks [128]byte
		blocks2(&ks, &ctr, key)
		subtle.XORBytes(out, in, ks[:])
	}
}
