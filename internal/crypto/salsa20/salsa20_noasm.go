//go:build !amd64 || purego || !gc

package salsa20

const hasAsm = false

const hasVL = false

var useVL = false

func xorKeyStreamAsm(out, in []byte, counter *[16]byte, key *[32]byte) {
	panic("salsa20: no assembly kernels on this platform")
}

func blocks2(ks *[128]byte, counter *[16]byte, key *[32]byte) {
	panic("salsa20: no assembly kernels on this platform")
}

func blocks2x2(ks *[256]byte, c0, c1 *[16]byte, key *[32]byte) {
	panic("salsa20: no assembly kernels on this platform")
}
