package socket

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error) so callers can test them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed socket.
	ErrClosed = errors.New("socket: closed")
	// ErrTimeout is returned when a blocking operation's context deadline
	// passes. It wraps context.DeadlineExceeded too.
	ErrTimeout = errors.New("socket: timeout")
	// ErrWouldBlock is returned by Send on a WithNoBlock socket when no
	// peer can take the message now.
	ErrWouldBlock = errors.New("socket: would block")
	// ErrNoPeers is returned by Send on a WithNoBlock socket with no
	// connected peer at all (compare ErrNoSuchPeer: one peer addressed).
	ErrNoPeers = errors.New("socket: no peers")
	// ErrNoSuchPeer is returned when a message is addressed to one peer
	// that is not (or no longer) connected to this socket: a reply or a
	// ROUTER message whose peer is gone, SendTo or SubscribePeer with
	// another socket's Peer.
	ErrNoSuchPeer = errors.New("socket: no such peer")
	// ErrNoPeer is the old name of ErrNoSuchPeer, the same error.
	//
	// Deprecated: use ErrNoSuchPeer, whose name does not read as ErrNoPeers.
	ErrNoPeer = ErrNoSuchPeer
	// ErrPeerLost is returned by a REQ socket's Recv when the peer that was
	// sent the request disconnects before replying, and by SendTo when the
	// chosen peer is gone.
	ErrPeerLost = errors.New("socket: peer lost before reply")
	// ErrState is returned when an operation is not allowed in the socket's
	// current state (REQ Send twice, REP Send before Recv) or by its type
	// (Send on PULL, Recv on PUSH, Subscribe on PUB).
	ErrState = errors.New("socket: operation not allowed in this state")
	// ErrTooLarge is returned by Send for a message over the maximum message
	// size or with more than 65536 frames, and is the reason a connection is
	// dropped when a peer announces a larger frame or sends more frames.
	ErrTooLarge = errors.New("socket: message too large")
	// ErrOption is returned by New for an option with a bad value or an
	// unknown socket type, and by ParseType.
	ErrOption = errors.New("socket: invalid option")
	// ErrEndpoint is returned for a malformed or unsupported endpoint.
	ErrEndpoint = errors.New("socket: bad endpoint")
	// ErrProtocol is the reason a connection is dropped when the peer
	// violates ZMTP (bad greeting, bad frame flags, garbage).
	ErrProtocol = errors.New("socket: protocol error")
	// ErrKey is returned for a malformed CURVE key (not 40 characters of
	// Z85, say).
	ErrKey = errors.New("socket: bad key")
	// ErrCertificate is returned for a certificate file that cannot be
	// used: malformed, missing a key, or a secret file others can read.
	ErrCertificate = errors.New("socket: bad certificate")
	// ErrRefused is the reason a peer is refused by access control (an
	// address filter, the trusted keys, a PLAIN user table, an
	// Authenticator) or by the peer (a ZMTP ERROR during the handshake).
	ErrRefused = errors.New("socket: refused")
	// ErrFreed is returned by Send and SendTo for a received message that
	// was given back with Free (through any copy).
	ErrFreed = errors.New("socket: message used after Free")

	// ErrEmpty is returned by Send for a message with no frames.
	ErrEmpty = errors.New("socket: empty message")
)

// RefusedError is why a peer would not have this socket: the reason it sent
// in a ZMTP ERROR command (a CURVE server that does not trust this client's
// key, a PLAIN server that does not know its user, an Authenticator's
// reason), or, on a connection this socket dialled, a mechanism mismatch
// (the peer speaks CURVE, this socket NULL). It wraps ErrRefused. The
// socket counts these in Stats.Refused and reports each in an
// EventRejected (or, for an ERROR after the handshake, an
// EventDisconnected) whose Err is the *RefusedError.
type RefusedError struct {
	Reason string // the peer's text, or "mechanism mismatch: ..."
}

func (e *RefusedError) Error() string { return "socket: refused by the peer: " + e.Reason }

// Unwrap returns ErrRefused.
func (e *RefusedError) Unwrap() error { return ErrRefused }
