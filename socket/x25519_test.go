package socket

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

func unhex32(t testing.TB, s string) *[32]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad test vector %q", s)
	}
	return (*[32]byte)(b)
}

// RFC 7748, section 5.2 (the two single products and the iterated one)
// and section 6.1 (Alice's and Bob's keys and their shared secret).
func TestX25519RFC7748Vectors(t *testing.T) {
	for _, v := range []struct{ k, u, out string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		var out [32]byte
		if !x25519(&out, unhex32(t, v.k), unhex32(t, v.u)) {
			t.Fatal("refused a valid point")
		}
		if got := hex.EncodeToString(out[:]); got != v.out {
			t.Errorf("X25519(%s, %s) = %s, want %s", v.k, v.u, got, v.out)
		}
	}

	// Iterated: k = u = 9; then k, u = X25519(k, u), k.
	k, u := [32]byte{9}, [32]byte{9}
	for i := 1; i <= 1000; i++ {
		var r [32]byte
		x25519(&r, &k, &u)
		u, k = k, r
		switch i {
		case 1:
			if got := hex.EncodeToString(k[:]); got != "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079" {
				t.Fatalf("after one iteration: %s", got)
			}
		case 1000:
			if got := hex.EncodeToString(k[:]); got != "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51" {
				t.Fatalf("after 1,000 iterations: %s", got)
			}
		}
	}

	aliceSec := unhex32(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	bobSec := unhex32(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
	var alicePub, bobPub, s1, s2 [32]byte
	x25519Base(&alicePub, aliceSec)
	x25519Base(&bobPub, bobSec)
	if got := hex.EncodeToString(alicePub[:]); got != "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a" {
		t.Errorf("Alice's public key %s", got)
	}
	if got := hex.EncodeToString(bobPub[:]); got != "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f" {
		t.Errorf("Bob's public key %s", got)
	}
	x25519(&s1, aliceSec, &bobPub)
	x25519(&s2, bobSec, &alicePub)
	if s1 != s2 || hex.EncodeToString(s1[:]) != "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742" {
		t.Errorf("shared secrets %x and %x", s1, s2)
	}
}

// The ladder and the fixed-base path agree with crypto/ecdh on random
// scalars and points, the high bit of the point set or not.
func TestX25519MatchesCryptoECDH(t *testing.T) {
	curve := ecdh.X25519()
	for i := range 200 {
		var k, u [32]byte
		rand.Read(k[:])
		rand.Read(u[:])
		if i%2 == 0 {
			u[31] |= 0x80 // RFC 7748: ignored
		}
		priv, err := curve.NewPrivateKey(k[:])
		if err != nil {
			t.Fatal(err)
		}
		var pub [32]byte
		x25519Base(&pub, &k)
		if !bytes.Equal(pub[:], priv.PublicKey().Bytes()) {
			t.Fatalf("public key of %x: %x, crypto/ecdh %x", k, pub, priv.PublicKey().Bytes())
		}
		uu := u
		uu[31] &= 0x7f // crypto/ecdh takes the point as it is: give it the masked one
		peer, err := curve.NewPublicKey(uu[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := priv.ECDH(peer)
		var got [32]byte
		ok := x25519(&got, &k, &u)
		if err != nil { // all-zero result: both must refuse
			if ok {
				t.Fatalf("X25519(%x, %x) accepted a small-order point", k, u)
			}
			continue
		}
		if !ok || !bytes.Equal(got[:], want) {
			t.Fatalf("X25519(%x, %x) = %x (ok %v), crypto/ecdh %x", k, u, got, ok, want)
		}
	}
}

// Points of small order give the all-zero secret whatever the scalar: a
// peer sending one would fix the shared key, so x25519 and boxKey refuse.
func TestX25519RefusesSmallOrderPoints(t *testing.T) {
	for _, u := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		_, sec, err := generateKey()
		if err != nil {
			t.Fatal(err)
		}
		var out, key [32]byte
		if x25519(&out, &sec, unhex32(t, u)) {
			t.Errorf("point %s accepted: %x", u, out)
		}
		if boxKey(&key, unhex32(t, u), &sec) {
			t.Errorf("boxKey accepted point %s", u)
		}
	}
}

// boxKey is nacl/box's Precompute, and generateKey's pairs work with
// nacl/box both ways.
func TestBoxKeyMatchesNaClBox(t *testing.T) {
	for range 20 {
		aPub, aSec, err := generateKey()
		if err != nil {
			t.Fatal(err)
		}
		bPub, bSec, err := box.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var mine, theirs [32]byte
		if !boxKey(&mine, bPub, &aSec) {
			t.Fatal("boxKey refused a fresh key")
		}
		box.Precompute(&theirs, &aPub, bSec)
		if mine != theirs {
			t.Fatalf("boxKey %x, box.Precompute %x", mine, theirs)
		}
	}
}

func BenchmarkX25519(b *testing.B) {
	pub, sec, _ := generateKey()
	b.Run("boxKey", func(b *testing.B) {
		var k [32]byte
		for range b.N {
			boxKey(&k, &pub, &sec)
		}
	})
	b.Run("box.Precompute", func(b *testing.B) {
		var k [32]byte
		for range b.N {
			box.Precompute(&k, &pub, &sec)
		}
	})
	b.Run("generateKey", func(b *testing.B) {
		for range b.N {
			generateKey()
		}
	})
	b.Run("box.GenerateKey", func(b *testing.B) {
		for range b.N {
			box.GenerateKey(rand.Reader)
		}
	})
}
