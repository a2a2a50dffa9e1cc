package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/examples/internal/run"
)

var bin string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = run.Build(".", "chat")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Alice and Bob join a room by name on the loopback interface, find each
// other over mDNS and talk; Carol, in another room, hears nothing.
func TestChat(t *testing.T) {
	room := fmt.Sprintf("room-%04x", rand.Uint32()&0xffff)
	alice := run.Start(t, "alice", bin, "-room", room, "-name", "alice", "-iface", "lo")
	bob := run.Start(t, "bob", bin, "-room", room, "-name", "bob", "-iface", "lo")
	carol := run.Start(t, "carol", bin, "-room", room+"-other", "-name", "carol", "-iface", "lo")
	alice.WaitLine(`^\* bob is here$`)
	bob.WaitLine(`^\* alice is here$`)

	// Bob's subscription reaches Alice's publisher a moment after he
	// connects; until then what she says is not sent to him (publish /
	// subscribe keeps no history). Say hello until he hears it.
	heard := false
	for i := 0; i < 50 && !heard; i++ {
		alice.Send(fmt.Sprintf("hello %d", i))
		heard = bob.Within(`^\[\d\d:\d\d:\d\d\] alice: hello \d+$`, 200*time.Millisecond)
	}
	if !heard {
		t.Fatal("bob never heard alice")
	}
	// The same holds the other way: Alice's subscription may reach Bob's
	// publisher later than his reached hers.
	heard = false
	for i := 0; i < 50 && !heard; i++ {
		bob.Send(fmt.Sprintf("hi alice %d", i))
		heard = alice.Within(`^\[\d\d:\d\d:\d\d\] bob: hi alice \d+$`, 200*time.Millisecond)
	}
	if !heard {
		t.Fatal("alice never heard bob")
	}

	// Bob leaves: Alice sees it at once (goodbye), not after an expiry.
	bob.CloseStdin()
	bob.MustSucceed()
	alice.WaitLine(`^\* bob left \(goodbye\)$`)
	alice.CloseStdin()
	alice.MustSucceed()
	carol.Signal(os.Interrupt)
	carol.Wait()
	if out := carol.Output(); strings.Contains(out, "hello") || strings.Contains(out, "alice") {
		t.Errorf("carol, in another room, heard:\n%s", out)
	}
}
