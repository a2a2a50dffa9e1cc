// Package poly1305 is the Poly1305 one-time authenticator zpeer's CURVE
// MESSAGE boxes are tagged with: Sum and Verify give the tags of
// golang.org/x/crypto/poly1305, made faster for long messages on amd64
// CPUs with AVX2.
//
// A long message is authenticated four 16-byte blocks at a time, one per
// 64-bit lane of YMM registers holding the accumulator in five 26-bit
// limbs (the layout of OpenSSL's and libsodium's AVX2 code): each lane
// runs Horner's rule with r^4, and the lanes are joined at the end with
// r^4, r^3, r^2 and r. The last blocks that do not fill a group of four,
// and the final reduction, are done in 64-bit arithmetic, as x/crypto's
// generic code does. Short messages, and other CPUs and architectures, use
// x/crypto's poly1305. Everything is constant-time: no branch or memory
// index depends on the key or the message, only on its length.
//
// MAC is the streaming form, for a message authenticated in pieces as it
// is encrypted or received (a large CURVE MESSAGE, chunk by chunk while it
// is in the cache): a piece's whole groups of four blocks go through the
// same AVX2 kernel, from a zero accumulator, and the accumulator so far is
// folded in as h·r^k (k the piece's blocks), computed in 26-bit limbs.
//
// It is not a general-purpose MAC package (no hash.Hash, no reuse of a
// key); it lives under internal/ because nothing outside zpeer should
// depend on it.
package poly1305
