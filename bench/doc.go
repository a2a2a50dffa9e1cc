// Package bench measures zpeer side by side with other messaging stacks, in
// the same run and on the same machine, over loopback TCP (127.0.0.1): libzmq
// through github.com/pebbe/zmq4 (cgo), go-zeromq/zmq4's own sockets, nanomsg
// mangos v3, NATS with an embedded server (a brokered reference point; with
// JetStream's file storage, the reference for the durable acked pipeline), and a
// bare TCP stream of length-prefixed records with buffered I/O, the floor
// any framing on TCP sits on.
//
// Every stack is a benchcore.Stack; the scenarios, the measurement and the
// report are internal/harness/benchcore's, the same code that `zpeer bench` runs
// for zpeer alone. This module exists so that the library module stays free
// of cgo and of the other stacks' dependencies.
//
// Commands: `go run ./cmd/compare` for the table, `go test -bench .` for
// per-stack Go benchmarks, `go test -run TestScenariosSmoke` for the quick
// check CI runs. See README.md.
package bench
