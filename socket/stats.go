package socket

import "sync/atomic"

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
	Reconnects    uint64 // dials after the first per endpoint
	Rejected      uint64 // connections refused for bad greetings, handshakes, oversized or malformed frames
	Refused       uint64 // connections the peer refused: its ZMTP ERROR (an untrusted key, say) or another mechanism (see RefusedError)
	EventsDropped uint64
	Shed          uint64 // accepted connections closed unread: over the handshake limits (WithHandshakeLimits)
	PerPeer       []PeerStats
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
