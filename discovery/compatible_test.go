package discovery_test

import (
	"strings"
	"testing"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// TestCompatibleAgreesWithSocket checks discovery's table of compatible
// socket types against socket's (socket.Type.Compatible), the one the
// engine enforces at the handshake. discovery keeps its own copy so that
// it does not import socket (and, through it, zmq4 and the crypto); this
// test is what keeps the two one table.
func TestCompatibleAgreesWithSocket(t *testing.T) {
	names := []string{"REQ", "REP", "DEALER", "ROUTER", "PUB", "SUB", "PUSH", "PULL", "PAIR", "XPUB", "XSUB"}
	pairs := 0
	for _, a := range names {
		local, err := socket.ParseType(a)
		if err != nil {
			t.Fatalf("socket.ParseType(%q): %v", a, err)
		}
		for _, b := range append(names, "BOGUS", "", "STREAM") {
			for _, rb := range []string{b, strings.ToLower(b)} {
				want := local.Compatible(rb)
				if got := discovery.Compatible(a, rb); got != want {
					t.Errorf("discovery.Compatible(%q, %q) = %v, socket says %v", a, rb, got, want)
				}
				if got := discovery.Compatible(strings.ToLower(a), rb); got != want {
					t.Errorf("discovery.Compatible(%q, %q) = %v, socket says %v", strings.ToLower(a), rb, got, want)
				}
				if want {
					pairs++
				}
			}
		}
	}
	// Two tables that had both lost entries would still agree: count the
	// compatible ordered pairs, 21 (REQ 2, REP 2, DEALER 3, ROUTER 3, PUB,
	// SUB, XPUB, XSUB 2 each, PUSH, PULL, PAIR 1 each), each seen with the
	// peer's name in upper and lower case.
	if pairs != 2*21 {
		t.Errorf("%d compatible (local, remote) names, want %d", pairs, 2*21)
	}
	for _, local := range []string{"BOGUS", ""} {
		for _, remote := range names {
			if discovery.Compatible(local, remote) {
				t.Errorf("discovery.Compatible(%q, %q) = true for an unknown local type", local, remote)
			}
		}
	}
}
