package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"github.com/zpeer/zpeer/examples/internal/run"
)

var bin string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = run.Build(".", "rpc")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Two replicas found over mDNS on lo; one is killed (no goodbye) while the
// caller runs, and every call is still answered.
func TestRPCFailOver(t *testing.T) {
	svc := fmt.Sprintf("adder-%04x", rand.Uint32()&0xffff)
	r1 := run.Start(t, "r1", bin, "-serve", "-name", "r1", "-service", svc, "-iface", "lo")
	r2 := run.Start(t, "r2", bin, "-serve", "-name", "r2", "-service", svc, "-iface", "lo")
	r1.WaitLine(`^replica r1 serving`)
	r2.WaitLine(`^replica r2 serving`)
	caller := run.Start(t, "caller", bin, "-calls", "30", "-interval", "20ms", "-replicas", "2", "-service", svc, "-iface", "lo")
	caller.WaitLine(`^found 2 replicas`)
	caller.WaitLine(`\(by r2\)$`)
	r2.Signal(syscall.SIGKILL)
	caller.MustSucceed()
	caller.WaitLine(`^call 30: 30\+300=330 \(by r1\)$`)
	caller.WaitLine(`^30 calls, 0 failed`)
	if n := caller.Count(`^call \d+: \d+\+\d+=\d+ \(by r[12]\)$`); n != 30 {
		t.Errorf("%d answered calls, want 30", n)
	}
	r1.Signal(os.Interrupt)
	r1.Wait()
}
