//go:build amd64 && !purego && gc

package testutil

import "golang.org/x/sys/cpu"

// asmExpected reports whether internal/crypto/salsa20's and internal/crypto/poly1305's
// AVX2 kernels must be in use: they are built (these build constraints are
// theirs) and the CPU has AVX2.
func asmExpected() bool { return cpu.X86.HasAVX2 }

// AVX512VLExpected reports whether internal/crypto/salsa20's AVX-512VL
// kernel must be in use: it is built and the CPU has AVX-512F and VL.
func AVX512VLExpected() bool { return cpu.X86.HasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL }
