package salsa20

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/salsa20/salsa"

	"github.com/zpeer/zpeer/internal/testutil"
)

// modes runs f with the assembly kernels (where the CPU has them) and with
// the fallback; on a CPU with AVX-512VL, the assembly run twice: with
// blocks8VL ("vl") and with blocks8 ("avx2"). It fails if the CPU has
// AVX-512VL and a build with the kernels does not use blocks8VL.
func modes(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	testutil.AsmModes(t, hasAsm, &useAsm, func(t *testing.T) {
		if !useAsm {
			f(t)
			return
		}
		if testutil.AVX512VLExpected() && !hasVL {
			t.Fatal("the CPU has AVX-512VL but the package reports no blocks8VL: its subtests would not run")
		}
		if !hasVL {
			t.Log("blocks8VL not run: no AVX-512VL on this CPU")
			f(t)
			return
		}
		for _, vl := range []bool{true, false} {
			name := "avx2"
			if vl {
				name = "vl"
			}
			t.Run(name, func(t *testing.T) {
				defer func(old bool) { useVL = old }(useVL)
				useVL = vl
				f(t)
			})
		}
	})
}

type vector struct {
	key     [32]byte
	counter [16]byte
	in      []byte
}

func randomVector(r *rand.Rand, n int) vector {
	var v vector
	for i := range v.key {
		v.key[i] = byte(r.Uint32())
	}
	for i := range v.counter {
		v.counter[i] = byte(r.Uint32())
	}
	v.in = make([]byte, n)
	for i := range v.in {
		v.in[i] = byte(r.Uint32())
	}
	return v
}

// check compares XORKeyStream with x/crypto's, into a fresh buffer and in
// place, and checks that counter is left as it was.
func check(t *testing.T, v vector) {
	t.Helper()
	want := make([]byte, len(v.in))
	ctr := v.counter
	salsa.XORKeyStream(want, v.in, &ctr, &v.key)

	got := make([]byte, len(v.in)+1)
	got[len(v.in)] = 0xa5
	ctr = v.counter
	XORKeyStream(got, v.in, &ctr, &v.key)
	if ctr != v.counter {
		t.Fatalf("len %d: counter changed to %x", len(v.in), ctr)
	}
	if !bytes.Equal(got[:len(v.in)], want) {
		t.Fatalf("len %d, counter %x: first difference at byte %d", len(v.in), v.counter, firstDiff(got, want))
	}
	if got[len(v.in)] != 0xa5 {
		t.Fatalf("len %d: wrote past the end of in", len(v.in))
	}

	inPlace := bytes.Clone(v.in)
	XORKeyStream(inPlace, inPlace, &ctr, &v.key)
	if !bytes.Equal(inPlace, want) {
		t.Fatalf("len %d in place, counter %x: first difference at byte %d", len(v.in), v.counter, firstDiff(inPlace, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestXORKeyStreamEveryLength(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for n := 0; n <= 1100; n++ {
			check(t, randomVector(r, n))
		}
	})
}

func TestXORKeyStreamLong(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{4096, 64 << 10, 64<<10 + 1, 1<<20 + 17} {
			check(t, randomVector(r, n))
		}
	})
}

// TestXORKeyStreamCounterCarry starts the block number just below the 2^32
// boundary (the low word's carry into the high word, inside and between the
// kernels' steps) and just below 2^64 (the wrap to 0).
func TestXORKeyStreamCounterCarry(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		starts := []uint64{
			1<<32 - 1, 1<<32 - 2, 1<<32 - 3, 1<<32 - 7, 1<<32 - 8, 1<<32 - 9, 1<<32 - 20,
			1<<64 - 1, 1<<64 - 2, 1<<64 - 5, 1<<64 - 8, 1<<64 - 13,
		}
		for _, start := range starts {
			for _, n := range []int{1, 64, 65, 97, 128, 129, 200, 511, 512, 513, 1024 + 100, 4096 + 64} {
				t.Run(fmt.Sprintf("%#x/%d", start, n), func(t *testing.T) {
					v := randomVector(r, n)
					binary.LittleEndian.PutUint64(v.counter[8:], start)
					check(t, v)
				})
			}
		}
	})
}

// TestXORKeyStreamKnownAnswer pins the key stream to a vector computed
// independently of x/crypto: the Salsa20 specification's expansion example
// (section 10), key 1..16 and 201..216, nonce 101..108, block 109..116.
func TestXORKeyStreamKnownAnswer(t *testing.T) {
	var key [32]byte
	var counter [16]byte
	for i := range 16 {
		key[i] = byte(1 + i)
		key[16+i] = byte(201 + i)
		counter[i] = byte(101 + i)
	}
	want := []byte{
		69, 37, 68, 39, 41, 15, 107, 193, 255, 139, 122, 6, 170, 233, 217, 98,
		89, 144, 182, 106, 21, 51, 200, 65, 239, 49, 222, 34, 215, 114, 40, 126,
		104, 197, 7, 225, 197, 153, 31, 2, 102, 78, 76, 176, 84, 245, 246, 184,
		177, 160, 133, 130, 6, 72, 149, 119, 192, 195, 132, 236, 234, 103, 246, 74,
	}
	modes(t, func(t *testing.T) {
		for _, n := range []int{64, 97, 512} {
			out := make([]byte, n)
			XORKeyStream(out, out, &counter, &key)
			if !bytes.Equal(out[:64], want) {
				t.Fatalf("len %d: first block %v, want %v", n, out[:64], want)
			}
		}
	})
}

// TestKeyStream128 checks KeyStream128 against XORKeyStream of zeros, over
// whatever ks held before.
func TestKeyStream128(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, start := range []uint64{0, 1, 1<<32 - 1, 1<<64 - 1} {
			v := randomVector(r, 128)
			binary.LittleEndian.PutUint64(v.counter[8:], start)
			want := make([]byte, 128)
			salsa.XORKeyStream(want, want, &v.counter, &v.key)
			ks := [128]byte(v.in)
			ctr := v.counter
			KeyStream128(&ks, &ctr, &v.key)
			if !bytes.Equal(ks[:], want) || ctr != v.counter {
				t.Fatalf("block %#x: first difference at byte %d", start, firstDiff(ks[:], want))
			}
		}
	})
}

// TestKeyStream128x2 checks both halves of KeyStream128x2 against
// x/crypto, for nonces that differ in one bit or in all of them and block
// numbers on both sides of the carries.
func TestKeyStream128x2(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, start := range []uint64{0, 5, 1<<32 - 1, 1<<64 - 1} {
			v := randomVector(r, 256)
			c0 := v.counter
			binary.LittleEndian.PutUint64(c0[8:], start)
			for _, c1 := range []func() [16]byte{
				func() [16]byte { c := c0; c[7] ^= 1; return c },
				func() [16]byte { c := v.counter; binary.LittleEndian.PutUint64(c[8:], ^start); return c },
			} {
				c1 := c1()
				want := make([]byte, 256)
				salsa.XORKeyStream(want[:128], want[:128], &c0, &v.key)
				salsa.XORKeyStream(want[128:], want[128:], &c1, &v.key)
				ks := [256]byte(v.in)
				a, b := c0, c1
				KeyStream128x2(&ks, &a, &b, &v.key)
				if !bytes.Equal(ks[:], want) || a != c0 || b != c1 {
					t.Fatalf("block %#x: first difference at byte %d", start, firstDiff(ks[:], want))
				}
			}
		}
	})
}

func FuzzXORKeyStream(f *testing.F) {
	f.Add([]byte("key"), []byte("nonce"), uint64(0), 97)
	f.Add([]byte{}, []byte{}, uint64(1<<32-1), 1000)
	f.Add([]byte{1}, []byte{2}, uint64(1<<64-3), 600)
	f.Fuzz(func(t *testing.T, keyBytes, nonce []byte, block uint64, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		var v vector
		copy(v.key[:], keyBytes)
		copy(v.counter[:8], nonce)
		binary.LittleEndian.PutUint64(v.counter[8:], block)
		v.in = make([]byte, n)
		for i := range v.in {
			v.in[i] = byte(i * 7)
		}
		check(t, v)
		if hasVL && useVL { // blocks8 too, where blocks8VL is the default
			useVL = false
			defer func() { useVL = true }()
			check(t, v)
		}
	})
}

var benchSizes = []int{97, 1 << 10, 64 << 10, 1 << 20}

func BenchmarkXORKeyStream(b *testing.B) {
	var key [32]byte
	var counter [16]byte
	for _, n := range benchSizes {
		buf := make([]byte, n)
		b.Run(fmt.Sprintf("zpeer/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				XORKeyStream(buf, buf, &counter, &key)
			}
		})
		if hasVL && n > 128 {
			b.Run(fmt.Sprintf("zpeer-avx2/%d", n), func(b *testing.B) {
				defer func(old bool) { useVL = old }(useVL)
				useVL = false
				b.SetBytes(int64(n))
				for b.Loop() {
					XORKeyStream(buf, buf, &counter, &key)
				}
			})
		}
		if n <= 128 {
			b.Run(fmt.Sprintf("zpeer-KeyStream128/%d", n), func(b *testing.B) {
				var ks [128]byte
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					KeyStream128(&ks, &counter, &key)
				}
			})
		}
		if n <= 128 {
			b.Run(fmt.Sprintf("zpeer-KeyStream128x2-per-nonce/%d", n), func(b *testing.B) {
				var ks [256]byte
				c1 := counter
				c1[0] = 1
				b.SetBytes(int64(2 * n))
				b.ReportAllocs()
				for b.Loop() {
					KeyStream128x2(&ks, &counter, &c1, &key)
				}
			})
		}
		b.Run(fmt.Sprintf("xcrypto/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				salsa.XORKeyStream(buf, buf, &counter, &key)
			}
		})
	}
}

// TestXORKeyStreamECRYPT pins long key streams (131072 bytes: 256 steps of
// the eight-block kernel) to ECRYPT's verified test vectors, set 6
// (testdata/ecrypt-set6.txt names the source): the XOR of every 64-byte
// block, as computed apart from x/crypto and from this package.
func TestXORKeyStreamECRYPT(t *testing.T) {
	vectors := readECRYPT(t, "testdata/ecrypt-set6.txt")
	if len(vectors) != 4 {
		t.Fatalf("%d vectors in testdata/ecrypt-set6.txt, want 4", len(vectors))
	}
	modes(t, func(t *testing.T) {
		for i, v := range vectors {
			var counter [16]byte
			copy(counter[:8], v.iv)
			buf := make([]byte, v.n)
			XORKeyStream(buf, buf, &counter, &v.key)
			var digest [64]byte
			for b := buf; len(b) > 0; b = b[64:] {
				subtle.XORBytes(digest[:], digest[:], b[:64])
			}
			if !bytes.Equal(digest[:], v.digest) {
				t.Fatalf("vector %d: xor-digest %x, want %x", i, digest, v.digest)
			}
		}
	})
}

type ecryptVector struct {
	key        [32]byte
	iv, digest []byte
	n          int
}

func readECRYPT(t *testing.T, path string) []ecryptVector {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []ecryptVector
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 4 {
			t.Fatalf("%s: bad line %q", path, line)
		}
		var v ecryptVector
		key, err1 := hex.DecodeString(f[0])
		iv, err2 := hex.DecodeString(f[1])
		n, err3 := strconv.Atoi(f[2])
		digest, err4 := hex.DecodeString(f[3])
		if err := errors.Join(err1, err2, err3, err4); err != nil || len(key) != 32 || len(iv) != 8 || len(digest) != 64 || n%64 != 0 {
			t.Fatalf("%s: bad line %q: %v", path, line, err)
		}
		v.key, v.iv, v.n, v.digest = [32]byte(key), iv, n, digest
		out = append(out, v)
	}
	return out
}

// FuzzKeyStream128x2 compares the two-nonce kernel (and KeyStream128, the
// two-block one) with x/crypto for any key, nonces and block numbers.
func FuzzKeyStream128x2(f *testing.F) {
	f.Add([]byte("key"), []byte("nonce-0"), []byte("nonce-1"), uint64(0), uint64(1))
	f.Add([]byte{0xff}, []byte{}, []byte{0xff}, uint64(1<<32-1), uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, keyBytes, n0, n1 []byte, b0, b1 uint64) {
		var key [32]byte
		copy(key[:], keyBytes)
		var c0, c1 [16]byte
		copy(c0[:8], n0)
		copy(c1[:8], n1)
		binary.LittleEndian.PutUint64(c0[8:], b0)
		binary.LittleEndian.PutUint64(c1[8:], b1)
		want := make([]byte, 256)
		salsa.XORKeyStream(want[:128], want[:128], &c0, &key)
		salsa.XORKeyStream(want[128:], want[128:], &c1, &key)
		var ks [256]byte
		KeyStream128x2(&ks, &c0, &c1, &key)
		if !bytes.Equal(ks[:], want) {
			t.Fatalf("KeyStream128x2: first difference at byte %d", firstDiff(ks[:], want))
		}
		var one [128]byte
		KeyStream128(&one, &c1, &key)
		if !bytes.Equal(one[:], want[128:]) {
			t.Fatalf("KeyStream128: first difference at byte %d", firstDiff(one[:], want[128:]))
		}
	})
}
