//go:build !amd64 || purego || !gc

package testutil

// asmExpected: no assembly kernels are built here (other architectures,
// -tags purego, gccgo).
func asmExpected() bool { return false }

// AVX512VLExpected: no assembly kernels in this build.
func AVX512VLExpected() bool { return false }
