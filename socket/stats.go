package socket

import (
	"errors"
	"sync/atomic"
)

// Counters are message and byte counts. Bytes count frame bodies, not ZMTP
// framing.
type Counters struct {
	MsgsIn, MsgsOut   uint64
	BytesIn, BytesOut uint64
	Drops             uint64 // outgoing: copies a PUB did not send because the peer's queue was full
	Discarded         uint64 // incoming: messages the socket type throws away (REQ late replies, REP requests without a delimiter, what a SUB did not subscribe to, anything sent to a PUSH), and messages still unread when a peer's pipe closed with the socket
}

// PeerStats are one connected peer's counters.
type PeerStats struct {
	Endpoint string
	Remote   string
	PeerType string
	Identity []byte
	Queued   int // messages waiting in the send queue
	// Subscriptions is how many distinct prefixes the peer subscribed to
	// (PUB only): a publisher can wait for it before publishing.
	Subscriptions int
	Counters
}

// Stats is a snapshot of a socket's counters.
type Stats struct {
	Counters
	Peers         int
	Connects      uint64 // successful handshakes
	Disconnects   uint64
	Reconnects    uint64     // dials after the first per endpoint
	Rejected      uint64     // connections refused for bad greetings, handshakes, oversized or malformed frames
	RejectedBy    Rejections // Rejected by cause
	Refused       uint64     // connections the peer refused: its ZMTP ERROR (an untrusted key, say) or another mechanism (see RefusedError)
	EventsDropped uint64
	Shed          uint64 // accepted connections closed unread: over the handshake limits (WithHandshakeLimits)
	PerPeer       []PeerStats
}

// Rejections split Stats.Rejected by cause; the four add up to Rejected.
type Rejections struct {
	// Refused: access control said no, on this side (address filters, a
	// client key not trusted or revoked, a mechanism this socket does not
	// accept) or on the peer's (its ERROR: Stats.Refused counts those
	// apart): the error wraps ErrRefused.
	Refused uint64
	// Handshake: the handshake did not complete for another reason (a
	// timeout, a connection closed half way, a mechanism's handshake that
	// failed).
	Handshake uint64
	// Protocol: the peer broke the protocol, before or after the handshake
	// (garbage instead of a greeting, malformed frames or commands), or
	// sent a frame over the size limit (ErrProtocol, ErrTooLarge).
	Protocol uint64
	// Admission: the socket type turned the peer away after the handshake
	// (a PAIR that already has its peer).
	Admission uint64
}

// errAdmit marks a rejection by the socket type's admitter in rejections.count.
var errAdmit = errors.New("socket: not admitted")

type rejections struct {
	refused, handshake, protocol, admission atomic.Uint64
}

// count counts one rejection under the cause err names.
func (r *rejections) count(err error) {
	switch {
	case err == errAdmit:
		r.admission.Add(1)
	case errors.Is(err, ErrRefused):
		r.refused.Add(1)
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrTooLarge):
		r.protocol.Add(1)
	default:
		r.handshake.Add(1)
	}
}

func (r *rejections) snapshot() Rejections {
	return Rejections{Refused: r.refused.Load(), Handshake: r.handshake.Load(),
		Protocol: r.protocol.Load(), Admission: r.admission.Load()}
}

func (r *rejections) total() uint64 {
	s := r.snapshot()
	return s.Refused + s.Handshake + s.Protocol + s.Admission
}

type counters struct {
	msgsIn, msgsOut, bytesIn, bytesOut, drops, discarded atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		MsgsIn: c.msgsIn.Load(), MsgsOut: c.msgsOut.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		Drops: c.drops.Load(), Discarded: c.discarded.Load(),
	}
}
