// Package secretbox seals and opens the long part of an XSalsa20-Poly1305
// box (NaCl's crypto_secretbox, as in CURVE's MESSAGE boxes) in one pass:
// the Salsa20 key stream and the Poly1305 tag over the ciphertext come out
// of one kernel (internal/salsa20.XORKeyStreamMAC), the Poly1305 block
// updates running on the general registers while the AVX2 Salsa20 rounds
// keep the vector units busy ("stitching", as OpenSSL's x86_64
// ChaCha20-Poly1305 does), instead of a key stream pass and a Poly1305
// pass over the same bytes.
//
// The caller derives XSalsa20's sub-key and key stream block 0 (Poly1305's
// key, then the pad of the box's first 32 bytes) and seals or opens those
// first 32 bytes itself; Seal and Open do the rest of the box from block 1
// on. On CPUs without the AVX2 kernels, and for boxes too short to gain,
// they are the two passes of internal/salsa20 and internal/poly1305.
// Everything is constant-time: no branch or memory index depends on the
// keys or the data, only on lengths.
package secretbox
