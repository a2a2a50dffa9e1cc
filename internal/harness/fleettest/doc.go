// Package fleettest holds the scale-out scenarios that run the zpeer
// command on a fleet of hosts (internal/harness/fleet: network namespaces on one
// bridge), as users run it on a LAN: a partitioned acknowledged pipeline
// whose pushers and pullers find each other over mDNS while a quarter of
// the pullers are killed, and a replicated state with a mirror on every
// host while one of them restarts. Discovery's own fleet test is
// discovery's TestFleet.
//
// The package has no code of its own, only tests. They build the zpeer
// binary once (without the race detector, whatever the test binary's
// build: a fleet runs dozens of them), need Linux and root, and skip with
// the reason otherwise. docs/scaling.md reports what they measure.
package fleettest
