//go:build amd64 && !purego && gc

package testutil

import "golang.org/x/sys/cpu"

// asmExpected reports whether internal/crypto/salsa20's and internal/crypto/poly1305's
// AVX2 kernels must be in use: they are built (these build constraints are
// theirs) and the CPU has AVX2.
func asmExpected() bool { return cpu.X86.HasAVX2 }
