package secretbox

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/poly1305" //lint:ignore SA1019 the oracle for boxes shorter than Head
	"golang.org/x/crypto/salsa20/salsa"

	"github.com/zpeer/zpeer/internal/salsa20"
	"github.com/zpeer/zpeer/internal/testutil"
)

func modes(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	testutil.AsmModes(t, salsa20.Stitched(), &useAsm, f)
}

// boxKeys is what a box's caller derives: XSalsa20's sub-key, the counter
// of key stream block 1 and block 0 (Poly1305's key, the head's pad).
func boxKeys(key *[32]byte, nonce *[24]byte) (subKey [32]byte, counter [16]byte, first [64]byte) {
	var in [16]byte
	copy(in[:], nonce[:16])
	salsa.HSalsa20(&subKey, &in, key, &salsa.Sigma)
	copy(counter[:8], nonce[16:])
	salsa.XORKeyStream(first[:], first[:], &counter, &subKey)
	counter[8] = 1
	return
}

// seal is NaCl's secretbox.Seal (tag, then ciphertext) through Seal, in
// place or not. Messages shorter than Head need no Seal at all.
func seal(key *[32]byte, nonce *[24]byte, msg []byte, inPlace bool) []byte {
	subKey, counter, first := boxKeys(key, nonce)
	out := make([]byte, TagSize+len(msg))
	ct := out[TagSize:]
	head := min(len(msg), Head)
	for i := range head {
		ct[i] = msg[i] ^ first[32+i]
	}
	tag := (*[TagSize]byte)(out[:TagSize])
	if len(msg) < Head {
		poly1305.Sum(tag, ct, (*[32]byte)(first[:32]))
		return out
	}
	rest := msg[Head:]
	if inPlace {
		copy(ct[Head:], rest)
		rest = ct[Head:]
	}
	Seal(tag, ct, rest, &counter, &subKey, (*[32]byte)(first[:32]))
	return out
}

// open is NaCl's secretbox.Open through Open, in place or not.
func open(key *[32]byte, nonce *[24]byte, box []byte, inPlace bool) ([]byte, bool) {
	subKey, counter, first := boxKeys(key, nonce)
	box = bytes.Clone(box)
	tag := (*[TagSize]byte)(box[:TagSize])
	ct := box[TagSize:]
	if len(ct) < Head {
		var sum [TagSize]byte
		poly1305.Sum(&sum, ct, (*[32]byte)(first[:32]))
		pt := make([]byte, len(ct))
		for i := range ct {
			pt[i] = ct[i] ^ first[32+i]
		}
		return pt, sum == *tag
	}
	pt := make([]byte, len(ct))
	for i := range Head {
		pt[i] = ct[i] ^ first[32+i]
	}
	out := pt[Head:]
	if inPlace {
		out = ct[Head:]
	}
	ok := Open(out, tag, ct, &counter, &subKey, (*[32]byte)(first[:32]))
	if inPlace {
		copy(pt[Head:], out)
	}
	return pt, ok
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func check(t *testing.T, r *rand.Rand, n int) {
	t.Helper()
	var key [32]byte
	var nonce [24]byte
	copy(key[:], randBytes(r, 32))
	copy(nonce[:], randBytes(r, 24))
	msg := randBytes(r, n)
	want := secretbox.Seal(nil, msg, &nonce, &key)
	for _, inPlace := range []bool{false, true} {
		got := seal(&key, &nonce, msg, inPlace)
		if !bytes.Equal(got, want) {
			t.Fatalf("len %d, in place %v: Seal differs from nacl/secretbox", n, inPlace)
		}
		pt, ok := open(&key, &nonce, want, inPlace)
		if !ok || !bytes.Equal(pt, msg) {
			t.Fatalf("len %d, in place %v: Open(nacl box) = ok %v, plaintext equal %v", n, inPlace, ok, bytes.Equal(pt, msg))
		}
		// Any flipped bit, in the tag or the ciphertext, fails.
		bad := bytes.Clone(want)
		i := r.IntN(len(bad))
		bad[i] ^= 1 << r.IntN(8)
		if _, ok := open(&key, &nonce, bad, inPlace); ok {
			t.Fatalf("len %d, in place %v: Open accepted a box with byte %d flipped", n, inPlace, i)
		}
	}
}

func TestSealOpenMatchesNaCl(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for n := 0; n <= 2100; n++ {
			check(t, r, n)
		}
		for _, n := range []int{4095, 4096 + 32, 64 << 10, 64<<10 + 31, 64<<10 + 32, 64<<10 + 33, 1<<20 + 17} {
			check(t, r, n)
		}
	})
}

// FuzzSealOpen checks the stitched kernel against the two-pass path.
func FuzzSealOpen(f *testing.F) {
	f.Add(make([]byte, 1100), uint64(1), false)
	f.Add(make([]byte, 3000), uint64(7), true)
	f.Fuzz(func(t *testing.T, msg []byte, seed uint64, inPlace bool) {
		if !salsa20.Stitched() {
			t.Skip("no stitched kernel on this CPU")
		}
		r := rand.New(rand.NewPCG(seed, 3))
		var key [32]byte
		var nonce [24]byte
		copy(key[:], randBytes(r, 32))
		copy(nonce[:], randBytes(r, 24))
		defer func(old bool) { useAsm = old }(useAsm)
		useAsm = false
		want := seal(&key, &nonce, msg, inPlace)
		useAsm = true
		got := seal(&key, &nonce, msg, inPlace)
		if !bytes.Equal(got, want) {
			t.Fatalf("len %d: stitched Seal differs from the two passes", len(msg))
		}
		pt, ok := open(&key, &nonce, got, inPlace)
		if !ok || !bytes.Equal(pt, msg) {
			t.Fatalf("len %d: stitched Open: ok %v", len(msg), ok)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	for _, asm := range []bool{true, false} {
		name := map[bool]string{true: "stitched", false: "twopass"}[asm]
		b.Run(name, func(b *testing.B) {
			if asm && !salsa20.Stitched() {
				b.Skip("no stitched kernel")
			}
			defer func(old bool) { useAsm = old }(useAsm)
			useAsm = asm
			const n = 1 << 20
			var subKey, polyKey [32]byte
			var counter [16]byte
			counter[8] = 1
			ct := make([]byte, Head+n)
			pt := make([]byte, n)
			var tag [TagSize]byte
			b.SetBytes(n)
			for b.Loop() {
				Seal(&tag, ct, pt, &counter, &subKey, &polyKey)
				if !Open(pt, &tag, ct, &counter, &subKey, &polyKey) {
					b.Fatal("box does not open")
				}
			}
		})
	}
}
