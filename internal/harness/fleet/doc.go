// Package fleet runs fleets of hosts for tests: a lab of network
// namespaces on one bridge (internal/harness/netns) with one or more processes per
// host, whose output lines the test reads, and measurements taken from
// outside them: the packets the hosts send into the bridge (Traffic) and
// each process's CPU time and memory (Proc.Usage).
//
// A scenario is a test that builds a Fleet, starts on each host the
// program it needs — the test binary itself in a helper mode (Self, as
// discovery's fleet test does), or any program by path, such as a built
// zpeer command — and waits for the lines those processes print
// (Proc.Wait), then stops them (Proc.Stop: standard input closes, so a
// helper leaves gracefully) or kills them (Proc.Kill: SIGKILL, no
// goodbye). Everything is removed at the end of the test, processes first,
// even when it fails.
//
// It needs Linux and root (as internal/harness/netns); New skips the test with the
// reason otherwise. It is not for production code.
package fleet
