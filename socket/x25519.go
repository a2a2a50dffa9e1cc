package socket

import (
	"crypto/rand"
	"crypto/subtle"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"golang.org/x/crypto/salsa20/salsa"
)

// The CURVE handshake's public-key work: X25519 (RFC 7748) and NaCl's
// crypto_box_beforenm on top of it. nacl/box and x/crypto/curve25519 do the
// same through crypto/ecdh, whose NewPrivateKey computes the public key of
// every secret it is given: each box.Precompute, box.Seal and box.Open
// pays for a fixed-base multiplication it throws away (58 µs beside the
// 48 µs it needs, on the project's VM), and box.GenerateKey uses the
// Montgomery ladder for the fixed base where the Edwards form's precomputed
// table is 2.8x faster. A handshake does three key generations and six
// Diffie-Hellman products between its two ends, so this halves its
// public-key time. The arithmetic is filippo.io/edwards25519's (the same
// field code as the standard library's); only the RFC's ladder is written
// here, and x25519_test.go checks it against crypto/ecdh and the RFC's
// vectors.

// x25519Base sets dst to the public key of the secret scalar (X25519 of the
// base point), through the Edwards curve's fixed-base table.
func x25519Base(dst, scalar *[32]byte) {
	s, err := edwards25519.NewScalar().SetBytesWithClamping(scalar[:])
	if err != nil {
		panic("socket: x25519Base: " + err.Error()) // unreachable: 32 bytes
	}
	var p edwards25519.Point
	copy(dst[:], p.ScalarBaseMult(s).BytesMontgomery())
}

// x25519 sets dst to X25519(scalar, point) and reports whether the result
// is not all zeros (a point of small order, which a peer could send to
// force a known shared secret: libsodium refuses it, and so do we).
func x25519(dst, scalar, point *[32]byte) bool {
	var e [32]byte
	copy(e[:], scalar[:])
	e[0] &= 248
	e[31] &= 127
	e[31] |= 64
	defer clear(e[:])

	var x1, x2, z2, x3, z3, a, aa, b, bb, c, d, da, cb, t field.Element
	if _, err := x1.SetBytes(point[:]); err != nil {
		panic("socket: x25519: " + err.Error()) // unreachable: 32 bytes
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for i := 254; i >= 0; i-- {
		k := int(e[i>>3]>>(i&7)) & 1
		swap ^= k
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = k

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		t.Subtract(&aa, &bb) // E
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)
		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&t, 121665) // a24 * E
		z2.Add(&z2, &aa)
		z2.Multiply(&z2, &t)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(dst[:], x2.Bytes())
	var zero [32]byte
	return subtle.ConstantTimeCompare(dst[:], zero[:]) == 0
}

// generateKey makes a fresh key pair from crypto/rand.
func generateKey() (pub, sec [32]byte, err error) {
	if _, err = rand.Read(sec[:]); err != nil {
		return pub, sec, err
	}
	x25519Base(&pub, &sec)
	return pub, sec, nil
}

// boxKey sets dst to crypto_box_beforenm(peer, sec): the key that
// box.SealAfterPrecomputation and box.OpenAfterPrecomputation take, the
// same as box.Precompute's. It reports false when the peer's key is of
// small order.
func boxKey(dst, peer, sec *[32]byte) bool {
	var shared [32]byte
	ok := x25519(&shared, sec, peer)
	var zeros [16]byte
	salsa.HSalsa20(dst, &zeros, &shared, &salsa.Sigma)
	clear(shared[:])
	return ok
}
