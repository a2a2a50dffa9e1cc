// Package benchcore measures zpeer's four figures — throughput (messages/s
// and bytes/s), latency percentiles, reliability (delivered / sent) and the
// throughput x latency product — over a fixed set of scenarios, and renders
// the results as a markdown table or JSON.
//
// It is the cgo-free core shared by `zpeer bench` (which runs the zpeer
// stack alone through Run) and by the bench/ module, which plugs libzmq,
// go-zeromq/zmq4, mangos, NATS and bare TCP into the same harness through
// the Stack interface (RunStacks) so that every stack is measured by the
// same code, in the same run, on the same machine.
//
// Every measurement is bounded in time (Config.Duration) and in count
// (Config.MaxMsgs), runs over loopback TCP on 127.0.0.1 only, and is
// repeated Config.Runs times; results carry the median and the spread.
//
// What it is not: a test of correctness (the socket and pattern packages
// have those), nor a load generator for remote hosts.
package benchcore
