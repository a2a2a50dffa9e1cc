package benchcore

import (
	"context"
	"errors"
)

// ErrNotSupported is returned by a Stack that cannot build a topology; the
// scenario is reported as "n/a" for it.
var ErrNotSupported = errors.New("benchcore: not supported by this stack")

// A Sender sends one message. Send blocks while the stack applies back
// pressure and returns soon after ctx ends.
//
// Buffer ownership: in the throughput and round-trip scenarios the harness
// never modifies a buffer it passed to Send, so a stack may keep referencing
// it. In the stamped scenarios (fan-out and faults, 64-byte messages) the
// harness reuses a ring of StampRing buffers: an adapter whose stack may
// still reference a buffer after that many later sends must copy it.
type Sender interface {
	Send(ctx context.Context, b []byte) error
}

// A Receiver receives one message. The returned slice is only read by the
// harness and only until the next Recv. Recv must return soon (within about
// 100 ms) after ctx ends.
type Receiver interface {
	Recv(ctx context.Context) ([]byte, error)
}

// A Conn both sends and receives: a requester or a replier.
type Conn interface {
	Sender
	Receiver
}

// A Flusher is a Sender that buffers; the harness calls Flush when it stops
// sending for a while (end of a run, a pause in a paced stream). Stacks that
// write on their own need not implement it.
type Flusher interface {
	Flush() error
}

// A Closer is a Receiver that can be closed on its own, from the goroutine
// that called Recv, to simulate a peer that dies (the puller-killed fault).
type Closer interface {
	Close() error
}

// A Topology is a set of connected sockets of one stack, ready to carry
// messages over loopback TCP.
type Topology struct {
	// Pipeline and PubSub: the sending socket and the receiving ones.
	Send Sender
	Recv []Receiver
	// ReqRep: the requester and the replier.
	Client, Server Conn
	// Close releases everything. The harness calls it once, after every
	// goroutine that used the topology has returned; it must tolerate a
	// receiver that the harness already closed.
	Close func() error
}

// A ProxyStack is a Stack that can put a pub/sub forwarder (an XSUB bound
// for the publisher, an XPUB bound for the subscribers, a proxy between
// them) between one publisher and n subscribers of everything. Stacks
// without one report the proxy scenarios as n/a.
type ProxyStack interface {
	ProxyPubSub(ctx context.Context, n int) (*Topology, error)
}

// A Stack is one messaging implementation under test. Each method builds a
// fresh topology bound and connected on 127.0.0.1 and returns it once every
// connection is up (or ErrNotSupported).
type Stack interface {
	// Name is the short column name ("zpeer", "libzmq", "tcp").
	Name() string
	// Pipeline connects one PUSH-like sender, load-balancing, to n
	// PULL-like receivers.
	Pipeline(ctx context.Context, n int) (*Topology, error)
	// PubSub connects one publisher to n subscribers of everything.
	PubSub(ctx context.Context, n int) (*Topology, error)
	// ReqRep connects one requester to one replier.
	ReqRep(ctx context.Context) (*Topology, error)
}
