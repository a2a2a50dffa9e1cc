package poly1305

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/poly1305" //lint:ignore SA1019 the oracle
)

// macSplit runs msg through a MAC in the pieces whose lengths cuts gives
// (cycled; a zero length is an empty Write) and returns its tag; it also
// checks Verify on a second MAC fed the same way, with the right tag and
// with want's bit flipped.
func macSplit(t *testing.T, msg []byte, key *[32]byte, cuts []int) [TagSize]byte {
	t.Helper()
	feed := func(m *MAC) {
		m.Init(key)
		rest := msg
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(cuts[i%len(cuts)], len(rest))
			}
			m.Write(rest[:n])
			rest = rest[n:]
		}
	}
	var m MAC
	feed(&m)
	var got [TagSize]byte
	m.Sum(&got)
	if m != (MAC{}) {
		t.Fatalf("len %d: Sum left the MAC uncleared", len(msg))
	}
	var want [TagSize]byte
	poly1305.Sum(&want, msg, key)
	if got != want {
		t.Fatalf("len %d, key %x, pieces %v: MAC %x, want %x", len(msg), key[:], cuts, got, want)
	}
	feed(&m)
	if !m.Verify(&want) {
		t.Fatalf("len %d, pieces %v: Verify refuses the right tag", len(msg), cuts)
	}
	bad := want
	bad[len(msg)%TagSize] ^= 1 << (len(msg) % 8)
	feed(&m)
	if m.Verify(&bad) {
		t.Fatalf("len %d, pieces %v: Verify takes a wrong tag", len(msg), cuts)
	}
	if m != (MAC{}) {
		t.Fatalf("len %d: Verify left the MAC uncleared", len(msg))
	}
	return got
}

// TestMACSplits: the streaming MAC gives x/crypto's tag however the
// message is cut: every length up to 1100 in one piece, in pieces of 1,
// 15, 16, 17, 63, 64 and 65 bytes, and in pieces around the kernel's
// group of four blocks; long messages in the pieces the CURVE codec
// writes (a byte, then 16 KiB runs).
func TestMACSplits(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		msg := make([]byte, 1100)
		fill(r, msg)
		for n := 0; n <= len(msg); n++ {
			var key [32]byte
			fill(r, key[:])
			macSplit(t, msg[:n], &key, nil)
			if n%7 == 0 {
				for _, cuts := range [][]int{{1}, {15}, {16}, {17}, {63}, {64}, {65}, {0, 200, 1, 64}, {3, 129, 256, 16}} {
					macSplit(t, msg[:n], &key, cuts)
				}
			}
		}
		long := make([]byte, 1<<20+33)
		fill(r, long)
		var key [32]byte
		fill(r, key[:])
		for _, cuts := range [][]int{nil, {1, 16 << 10}, {32, 16 << 10}, {1, 8 << 10, 64 << 10, 5000}} {
			macSplit(t, long, &key, cuts)
		}
	})
}

// TestMACExtremes is TestSumExtremes for the streaming MAC, in pieces that
// leave a partial block between Writes and in whole groups of four.
func TestMACExtremes(t *testing.T) {
	modes(t, func(t *testing.T) {
		var ones, zeros, mixed [32]byte
		for i := range ones {
			ones[i] = 0xff
		}
		copy(mixed[:16], ones[:16])
		for _, n := range []int{0, 15, 16, 63, 64, 65, 255, 256, 257, 1000, 4096 + 13, 1 << 16} {
			full := bytes.Repeat([]byte{0xff}, n)
			empty := make([]byte, n)
			for _, key := range []*[32]byte{&ones, &zeros, &mixed} {
				for _, cuts := range [][]int{nil, {1, 64}, {64, 128, 17}} {
					macSplit(t, full, key, cuts)
					macSplit(t, empty, key, cuts)
				}
			}
		}
	})
}

// FuzzMAC compares the streaming MAC, with the message cut where the
// fuzzer says, with x/crypto's Sum, then tampers: a tag with a byte
// changed is refused, and a message with a byte changed is accepted or
// refused exactly as x/crypto's Verify does.
func FuzzMAC(f *testing.F) {
	f.Add([]byte("key"), []byte("a message"), []byte{3, 0, 5}, uint32(0), byte(1))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 600), []byte{1, 255, 64}, uint32(299), byte(0x80))
	f.Add([]byte("a longer key, past the AVX2 kernel's threshold"), bytes.Repeat([]byte("0123456789abcdef"), 300), []byte{}, uint32(2048), byte(0x10))
	f.Fuzz(func(t *testing.T, keyBytes, msg, cutBytes []byte, at uint32, mask byte) {
		var key [32]byte
		copy(key[:], keyBytes)
		var cuts []int
		for _, c := range cutBytes {
			cuts = append(cuts, int(c)*3) // 0 to 765: empty, partial and whole groups
		}
		if allZero(cuts) {
			cuts = nil // empty pieces only would never end
		}
		tag := macSplit(t, msg, &key, cuts)
		if mask == 0 {
			mask = 1
		}
		var m MAC
		feed := func(msg []byte) {
			m.Init(&key)
			for i, rest := 0, msg; len(rest) > 0; i++ {
				n := len(rest)
				if len(cuts) > 0 {
					n = min(cuts[i%len(cuts)], len(rest))
				}
				m.Write(rest[:n])
				rest = rest[n:]
			}
		}
		bad := tag
		bad[at%TagSize] ^= mask
		feed(msg)
		if m.Verify(&bad) {
			t.Fatalf("len %d: Verify takes a tag with byte %d changed", len(msg), at%TagSize)
		}
		if len(msg) == 0 {
			return
		}
		tampered := bytes.Clone(msg)
		tampered[int(at)%len(msg)] ^= mask
		feed(tampered)
		if got, want := m.Verify(&tag), poly1305.Verify(&tag, tampered, &key); got != want {
			t.Fatalf("len %d, byte %d changed: Verify %v, x/crypto %v", len(msg), int(at)%len(msg), got, want)
		}
	})
}

func allZero(cuts []int) bool {
	for _, c := range cuts {
		if c != 0 {
			return false
		}
	}
	return true
}
