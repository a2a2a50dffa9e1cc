package testutil

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes (a logger's, a
// child process's output) while a test reads it. The zero value is ready.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually polls cond every 10 ms until it holds, failing the test after
// timeout with "timed out after <timeout> waiting for <what>".
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tk.C:
		}
	}
}

// AsmModes runs f as a subtest with *use set to true ("asm", only when
// have: the CPU has the assembly kernels) and then false ("fallback"),
// restoring *use after each: how a package with assembly kernels and a
// portable fallback tests both. Where the kernels are built (amd64, gc,
// not purego) and the CPU has AVX2, a have that is false fails the test
// instead of leaving the kernels untested; elsewhere the asm subtest is
// left out and the test log says why.
func AsmModes(t *testing.T, have bool, use *bool, f func(t *testing.T)) {
	t.Helper()
	if asmExpected() && !have {
		t.Fatal("the CPU has AVX2 and the assembly kernels are built, but the package reports none: the asm subtests would not run")
	}
	if !have {
		t.Log("asm subtest not run: no assembly kernels in this build (purego, not amd64) or no AVX2 on this CPU")
	}
	for _, asm := range []bool{true, false} {
		name := "fallback"
		if asm {
			if !have {
				continue
			}
			name = "asm"
		}
		t.Run(name, func(t *testing.T) {
			defer func(old bool) { *use = old }(*use)
			*use = asm
			f(t)
		})
	}
}

// CPUTime is the process's CPU time (user and system) so far: on a shared
// machine, CPU per message compares benchmark runs better than the wall
// clock.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
