package poly1305

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/poly1305" //lint:ignore SA1019 the oracle

	"github.com/zpeer/zpeer/internal/testutil"
)

func modes(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	testutil.AsmModes(t, hasAsm, &useAsm, f)
}

// check compares Sum (and, where there is one, the AVX2 path at any
// length) with x/crypto's, and Verify with the right and a wrong tag.
func check(t *testing.T, msg []byte, key *[32]byte) {
	t.Helper()
	var want, got [TagSize]byte
	poly1305.Sum(&want, msg, key)
	Sum(&got, msg, key)
	if got != want {
		t.Fatalf("len %d, key %x: Sum %x, want %x", len(msg), key[:], got, want)
	}
	if useAsm {
		sumAsm(&got, msg, key)
		if got != want {
			t.Fatalf("len %d, key %x: sumAsm %x, want %x", len(msg), key[:], got, want)
		}
	}
	if !Verify(&want, msg, key) {
		t.Fatalf("len %d: Verify refuses the right tag", len(msg))
	}
	want[len(msg)%TagSize] ^= 1 << (len(msg) % 8)
	if Verify(&want, msg, key) {
		t.Fatalf("len %d: Verify takes a wrong tag", len(msg))
	}
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func TestSumEveryLength(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		msg := make([]byte, 1100)
		fill(r, msg)
		for n := 0; n <= len(msg); n++ {
			var key [32]byte
			fill(r, key[:])
			check(t, msg[:n], &key)
		}
	})
}

// TestSumExtremes uses the keys and messages that make the limbs largest
// (all ones: r at its clamped maximum, every message limb full) and
// smallest, where a carry that is one bit short shows.
func TestSumExtremes(t *testing.T) {
	modes(t, func(t *testing.T) {
		var ones, zeros [32]byte
		for i := range ones {
			ones[i] = 0xff
		}
		var mixed [32]byte
		copy(mixed[:16], ones[:16])
		for _, n := range []int{0, 15, 16, 63, 64, 65, 255, 256, 257, 1000, 4096 + 13, 1 << 16} {
			full := bytes.Repeat([]byte{0xff}, n)
			empty := make([]byte, n)
			for _, key := range []*[32]byte{&ones, &zeros, &mixed} {
				check(t, full, key)
				check(t, empty, key)
			}
		}
	})
}

func TestSumLong(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, n := range []int{64 << 10, 1<<20 + 17, 1<<20 + 33} {
			msg := make([]byte, n)
			fill(r, msg)
			var key [32]byte
			fill(r, key[:])
			check(t, msg, &key)
		}
	})
}

// FuzzSum compares Sum (and the AVX2 kernel at any length) with x/crypto,
// then tampers: a tag with any bit changed is refused, and a message with
// any byte changed is accepted or refused exactly as x/crypto's Verify
// does (a key with r = 0 makes every message's tag s).
func FuzzSum(f *testing.F) {
	f.Add([]byte("key"), []byte("a message"), uint32(0), byte(1))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 300), uint32(299), byte(0x80))
	f.Add([]byte("a longer key, past the AVX2 kernel's threshold"), bytes.Repeat([]byte("0123456789abcdef"), 200), uint32(2048), byte(0x10))
	f.Fuzz(func(t *testing.T, keyBytes, msg []byte, at uint32, mask byte) {
		var key [32]byte
		copy(key[:], keyBytes)
		check(t, msg, &key)
		if mask == 0 {
			mask = 1
		}
		var tag [TagSize]byte
		poly1305.Sum(&tag, msg, &key)
		bad := tag
		bad[at%TagSize] ^= mask
		if Verify(&bad, msg, &key) {
			t.Fatalf("len %d: Verify takes a tag with byte %d changed", len(msg), at%TagSize)
		}
		if len(msg) == 0 {
			return
		}
		tampered := bytes.Clone(msg)
		tampered[int(at)%len(msg)] ^= mask
		if got, want := Verify(&tag, tampered, &key), poly1305.Verify(&tag, tampered, &key); got != want {
			t.Fatalf("len %d, byte %d changed: Verify %v, x/crypto %v", len(msg), int(at)%len(msg), got, want)
		}
	})
}

func BenchmarkSum(b *testing.B) {
	var key [32]byte
	key[0] = 7
	for _, n := range []int{64, 256, 1 << 10, 64 << 10, 1 << 20} {
		msg := make([]byte, n)
		var tag [TagSize]byte
		b.Run(fmt.Sprintf("zpeer/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				Sum(&tag, msg, &key)
			}
		})
		if n >= 64 {
			b.Run(fmt.Sprintf("zpeer-asm/%d", n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					sumAsm(&tag, msg, &key)
				}
			})
		}
		b.Run(fmt.Sprintf("xcrypto/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				poly1305.Sum(&tag, msg, &key)
			}
		})
	}
}
