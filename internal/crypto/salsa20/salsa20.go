package salsa20

import (
	"encoding/binary"

	"golang.org/x/crypto/salsa20/salsa"
)

// useAsm selects the assembly kernels. It is set at start-up from the CPU's
// features; tests turn it off to cover the fallback.
var useAsm = hasAsm

// XORKeyStream writes in XOR the Salsa20/20 key stream of key and counter
// into out, as golang.org/x/crypto/salsa20/salsa.XORKeyStream does: counter
// holds the 8-byte nonce (counter[0:8]) and the little-endian 64-bit number
// of the first block (counter[8:16]), which counts on across its 32-bit
// halves and wraps modulo 2^64. counter is not modified. out must be at
// least as long as in, and in and out must overlap entirely or not at all.
func XORKeyStream(out, in []byte, counter *[16]byte, key *[32]byte) {
	if len(in) == 0 {
		return
	}
	_ = out[len(in)-1]
	if !useAsm {
		salsa.XORKeyStream(out, in, counter, key)
		return
	}
	xorKeyStreamAsm(out[:len(in)], in, counter, key)
}

// KeyStream128 writes the first 128 bytes of the key stream of counter and
// key into ks: XORKeyStream of 128 zero bytes, without the zeros. One
// CURVE MESSAGE of up to 95 body bytes needs no more.
func KeyStream128(ks *[128]byte, counter *[16]byte, key *[32]byte) {
	if !useAsm {
		clear(ks[:])
		salsa.XORKeyStream(ks[:], ks[:], counter, key)
		return
	}
	blocks2(ks, counter, key)
}

// KeyStream128x2 writes the first 128 bytes of the key streams of c0 and
// of c1 (the same key) into ks[0:128] and ks[128:256]. The kernel is
// bound by the latency of its steps, not by the CPU's width, so two
// nonces' key streams made together cost little more than one: a sender
// makes its next MESSAGE's with this one's.
func KeyStream128x2(ks *[256]byte, c0, c1 *[16]byte, key *[32]byte) {
	if !useAsm {
		KeyStream128((*[128]byte)(ks[:128]), c0, key)
		KeyStream128((*[128]byte)(ks[128:]), c1, key)
		return
	}
	blocks2x2(ks, c0, c1, key)
}

// addBlocks advances counter's 64-bit block number by n, modulo 2^64.
func addBlocks(counter *[16]byte, n uint64) {
	binary.LittleEndian.PutUint64(counter[8:], binary.LittleEndian.Uint64(counter[8:])+n)
}
