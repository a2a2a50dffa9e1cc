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
	bin, cleanup = run.Build(".", "config")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// A config server and agents found over mDNS on lo: the agents start with
// the defaults, apply each change the server makes, a late agent starts
// from the current settings, and when the server restarts (with the
// defaults again) the agents follow it there.
func TestConfigReplicated(t *testing.T) {
	svc := fmt.Sprintf("config-%04x", rand.Uint32()&0xffff)
	server := run.Start(t, "server", bin, "-role", "server", "-name", "s1", "-service", svc, "-iface", "lo")
	server.WaitLine(`^server s1 serving 3 settings`)
	a1 := run.Start(t, "a1", bin, "-role", "agent", "-name", "a1", "-service", svc, "-iface", "lo")
	a2 := run.Start(t, "a2", bin, "-role", "agent", "-name", "a2", "-service", svc, "-iface", "lo")
	for _, a := range []*run.Proc{a1, a2} {
		a.WaitLine(`synced: 3 settings at seq 3: feature.search=off log.level=info pool.size=4$`)
	}
	server.Send("log.level=debug")
	server.Send("feature.search=")
	for _, a := range []*run.Proc{a1, a2} {
		a.WaitLine(`applies log.level=debug from s1 \(seq 4\)$`)
		a.WaitLine(`removes feature.search \(seq 5\)$`)
	}
	a2.Signal(syscall.SIGKILL)
	server.Send("pool.size=8")
	a1.WaitLine(`applies pool.size=8 from s1 \(seq 6\)$`)
	a3 := run.Start(t, "a3", bin, "-role", "agent", "-name", "a3", "-service", svc, "-iface", "lo")
	a3.WaitLine(`^agent a3 synced: 2 settings at seq 6: log.level=debug pool.size=8$`)

	// A new server: the defaults again, under a new epoch.
	server.Signal(syscall.SIGTERM)
	server.Wait()
	s2 := run.Start(t, "s2", bin, "-role", "server", "-name", "s2", "-service", svc, "-iface", "lo")
	s2.WaitLine(`^server s2 serving 3 settings`)
	for _, a := range []*run.Proc{a1, a3} {
		a.WaitLine(`applies feature.search=off from s2 \(re-sync\)$`)
		a.WaitLine(`applies log.level=info from s2 \(re-sync\)$`)
		a.WaitLine(`applies pool.size=4 from s2 \(re-sync\)$`)
	}
	for _, p := range []*run.Proc{a1, a3, s2} {
		p.Signal(os.Interrupt)
		p.Wait()
	}
}
