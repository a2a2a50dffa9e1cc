package socket

import (
	"fmt"
	"strings"

	"github.com/go-zeromq/zmq4"
)

// Type is a ZeroMQ socket type.
type Type uint8

// The socket types.
const (
	REQ Type = iota + 1
	REP
	DEALER
	ROUTER
	PUB
	SUB
	PUSH
	PULL
	PAIR
	XPUB
	XSUB
)

var typeNames = [...]string{REQ: "REQ", REP: "REP", DEALER: "DEALER", ROUTER: "ROUTER", PUB: "PUB", SUB: "SUB", PUSH: "PUSH", PULL: "PULL", PAIR: "PAIR", XPUB: "XPUB", XSUB: "XSUB"}

// String returns the ZMTP name of the type ("PUSH").
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", t)
}

// ParseType parses a socket type name, case-insensitively.
func ParseType(s string) (Type, error) {
	u := strings.ToUpper(s)
	for t, n := range typeNames {
		if n != "" && n == u {
			return Type(t), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown socket type %q", ErrOption, s)
}

func (t Type) valid() bool { return t >= REQ && t <= XSUB }

func (t Type) zmq() zmq4.SocketType { return zmq4.SocketType(t.String()) }

// Compatible reports whether a socket of type t may talk to a peer of type
// peer, following the ZMTP 3 compatibility table (XPUB and XSUB count as
// PUB and SUB).
func (t Type) Compatible(peer string) bool {
	p := zmq4.SocketType(strings.ToUpper(peer))
	switch p {
	case zmq4.Pair, zmq4.Pub, zmq4.Sub, zmq4.Req, zmq4.Rep, zmq4.Dealer, zmq4.Router, zmq4.Pull, zmq4.Push, zmq4.XPub, zmq4.XSub:
	default:
		return false
	}
	return t.valid() && t.zmq().IsCompatible(p)
}
