package bench

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// BenchmarkCryptoFloor is one MESSAGE box sealed and opened (the sender's
// and the receiver's crypto work, which run on two cores at once in a
// PUSH->PULL stream) with libsodium, as libzmq's CURVE does it, and with
// x/crypto's nacl/box. No stack moves messages faster over CURVE than one
// core runs the larger of the two halves. zpeer's own seal and open (its
// Salsa20 and the framing around it) are socket's BenchmarkCurveSealOpen.
//
//	go test -run '^$' -bench CryptoFloor -benchtime 1s
func BenchmarkCryptoFloor(b *testing.B) {
	if err := sodiumInit(); err != nil {
		b.Fatal(err)
	}
	var key [32]byte
	var nonce [24]byte
	key[0], nonce[0] = 7, 9
	for _, size := range []int{64, 1 << 20} {
		name := fmt.Sprintf("%dB", size)
		if size >= 1<<20 {
			name = fmt.Sprintf("%dMiB", size>>20)
		}
		b.Run(name+"/libsodium", func(b *testing.B) {
			m := make([]byte, 32+size) // crypto_box's zero padding, then the body
			c := make([]byte, len(m))
			out := make([]byte, len(m))
			b.SetBytes(int64(size))
			for b.Loop() {
				sodiumSeal(c, m, &nonce, &key)
				if !sodiumOpen(out, c, &nonce, &key) {
					b.Fatal("libsodium: box does not open")
				}
			}
		})
		b.Run(name+"/x-crypto", func(b *testing.B) {
			m := make([]byte, size)
			c := make([]byte, 0, size+box.Overhead)
			out := make([]byte, 0, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				c = box.SealAfterPrecomputation(c[:0], m, &nonce, &key)
				var ok bool
				if out, ok = box.OpenAfterPrecomputation(out[:0], c, &nonce, &key); !ok {
					b.Fatal("x/crypto: box does not open")
				}
			}
		})
	}
}

// The two agree: libsodium's box (past its 16 zero bytes) is x/crypto's.
func TestCryptoFloorBoxesAgree(t *testing.T) {
	if err := sodiumInit(); err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	var nonce [24]byte
	key[3], nonce[5] = 1, 2
	body := []byte("sixty-four bytes or so of a MESSAGE, sealed by both libraries...")
	m := append(make([]byte, 32), body...)
	c := make([]byte, len(m))
	sodiumSeal(c, m, &nonce, &key)
	if mine := box.SealAfterPrecomputation(nil, body, &nonce, &key); !bytes.Equal(c[16:], mine) {
		t.Fatalf("libsodium %x, x/crypto %x", c[16:], mine)
	}
}
