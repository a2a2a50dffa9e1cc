package bench

// #cgo pkg-config: libsodium
// #include <sodium.h>
import "C"

import (
	"errors"
	"unsafe"
)

// libsodium's crypto_box_afternm and crypto_box_open_afternm, the calls
// libzmq's CURVE makes for every MESSAGE (each with crypto_box's 32 zero
// bytes in front of the plaintext and 16 in front of the ciphertext, which
// libzmq copies the message into and out of). BenchmarkCryptoFloor uses
// them to measure the cost of the primitives alone, the floor under any
// CURVE stack's throughput on this machine.

func sodiumInit() error {
	if C.sodium_init() < 0 {
		return errors.New("bench: sodium_init failed")
	}
	return nil
}

// sodiumSeal is crypto_box_afternm(c, m, n, k); len(c) == len(m), and m
// starts with 32 zero bytes.
func sodiumSeal(c, m []byte, n *[24]byte, k *[32]byte) {
	C.crypto_box_afternm((*C.uchar)(unsafe.Pointer(&c[0])), (*C.uchar)(unsafe.Pointer(&m[0])), C.ulonglong(len(m)),
		(*C.uchar)(unsafe.Pointer(&n[0])), (*C.uchar)(unsafe.Pointer(&k[0])))
}

// sodiumOpen is crypto_box_open_afternm(m, c, n, k); it reports whether
// the tag verified.
func sodiumOpen(m, c []byte, n *[24]byte, k *[32]byte) bool {
	return C.crypto_box_open_afternm((*C.uchar)(unsafe.Pointer(&m[0])), (*C.uchar)(unsafe.Pointer(&c[0])), C.ulonglong(len(c)),
		(*C.uchar)(unsafe.Pointer(&n[0])), (*C.uchar)(unsafe.Pointer(&k[0]))) == 0
}
