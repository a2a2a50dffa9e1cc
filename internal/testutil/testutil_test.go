package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				b.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Fatalf("%d bytes, want 400", n)
	}
}

func TestEventuallyReturnsWhenTheConditionHolds(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times", n)
	}
}

// TestAsmModesFailsWithoutKernels: where the AVX2 kernels are built and
// the CPU has AVX2, AsmModes with have false (a package whose detection
// broke) fails instead of running the fallback alone. The failing call
// runs in a child test process.
func TestAsmModesFailsWithoutKernels(t *testing.T) {
	if os.Getenv("ZPEER_ASMMODES_CHILD") == "1" {
		use := false
		AsmModes(t, false, &use, func(t *testing.T) {})
		return
	}
	if !asmExpected() {
		t.Skip("no AVX2 kernels expected in this build or on this CPU: AsmModes only logs")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAsmModesFailsWithoutKernels$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ZPEER_ASMMODES_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the asm subtests would not run") {
		t.Fatalf("child test: %v, want a failure naming the missing asm subtests; output:\n%s", err, out)
	}
}

// TestAsmModesRunsBoth: with the kernels, f runs twice, asm first, with
// *use set as the subtest's name says, and *use is restored.
func TestAsmModesRunsBoth(t *testing.T) {
	use := true
	var seen []string
	AsmModes(t, true, &use, func(t *testing.T) {
		seen = append(seen, fmt.Sprintf("%s=%v", path.Base(t.Name()), use))
	})
	if strings.Join(seen, ",") != "asm=true,fallback=false" || !use {
		t.Fatalf("ran %v, use %v after", seen, use)
	}
}
