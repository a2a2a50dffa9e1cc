// Package faultsuite holds zpeer's fault-injection suite: the scenarios an
// operator would put a messaging library through, run against the real
// patterns over loopback TCP, with links impaired by internal/harness/faultnet and
// worker processes killed with SIGKILL.
//
// It has no code of its own beyond its tests. The short form runs in the
// test suite (./test.sh); the long form, with the sizes and durations of
// the original fault report (200 peers, 20 s cuts, 25 s reader pauses), runs
// with
//
//	ZPEER_FAULT=long go test -run Fault -v -timeout 30m ./internal/harness/faultsuite/
//
// Each scenario logs one line "FAULT scenario | held | figure" that
// docs/faults.md collects into its table.
package faultsuite
