// Package salsa20 is the Salsa20/20 key stream zpeer's CURVE MESSAGE boxes
// are sealed and opened with: XORKeyStream has exactly the semantics of
// golang.org/x/crypto/salsa20/salsa.XORKeyStream, made faster on amd64 CPUs
// with AVX2.
//
// Two assembly kernels do the work. A short input (up to 128 bytes, such as
// the 97 bytes of key stream one 64-byte CURVE MESSAGE needs: Poly1305's key,
// the flags byte and the body) is served by two blocks computed side by side
// in the two 128-bit lanes of four YMM registers, one call instead of x/crypto's
// two one-block passes. A long input is served eight blocks at a time, one
// block per 32-bit lane of sixteen YMM state vectors; on CPUs with
// AVX-512VL the same eight-block code is assembled a second time with
// VPROLD for its rotates (blocks8VL: one instruction where AVX2 needs
// two shifts and an XOR; about 1.45x the key stream per second), chosen
// at start-up. All are constant-time:
// no branch or memory index depends on the key, the nonce or the data. On
// other CPUs and architectures XORKeyStream is x/crypto's.
//
// It is not a general-purpose cipher package: there is no XSalsa20, no
// HSalsa20 and no stream state; callers (socket/curve.go) derive the
// XSalsa20 sub-key themselves and keep the 64-bit block counter. It lives
// under internal/ because nothing outside zpeer should depend on it.
package salsa20
