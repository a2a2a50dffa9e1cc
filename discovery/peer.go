package discovery

import (
	"maps"
	"slices"
	"time"
)

// Peer is one announcement seen by a Watcher: a socket of some other
// process, with the endpoints it can be reached at.
type Peer struct {
	// Key identifies the announcement within a Watcher; it is stable for
	// the announcement's life. It starts with the source: "mdns:" and the
	// DNS-SD instance name, "static:" and the endpoint, "srv:" and
	// target:port.
	Key string
	// Source is "mdns", "static" or "srv".
	Source string
	// Node is the node id of the announcing process ("" when a static or
	// SRV peer has no TXT record).
	Node string
	// Service is the application service name, e.g. "telemetry".
	Service string
	// Instance is the DNS-SD instance name (mDNS), or the SRV target.
	Instance string
	// Type is the socket type, upper case: "PUB", "REP"...
	Type string
	// Endpoints lists where to connect, preferred first, e.g.
	// "tcp://10.0.0.5:5555". A wildcard host in an announcement is
	// replaced by the address the announcement came from.
	Endpoints []string
	// Meta holds the application metadata of the TXT record.
	Meta map[string]string
	// Curve is the CURVE server public key the peer announced (TXT key
	// "curve", 40 characters of Z85), or "". Announcements are not
	// authenticated: the CURVE handshake proves whether the peer holds it.
	Curve string
}

// Endpoint returns the preferred endpoint, or "" if there is none.
func (p Peer) Endpoint() string {
	if len(p.Endpoints) == 0 {
		return ""
	}
	return p.Endpoints[0]
}

func (p Peer) clone() Peer {
	p.Endpoints = slices.Clone(p.Endpoints)
	p.Meta = maps.Clone(p.Meta)
	return p
}

// same reports whether two views of a peer carry the same information.
func (p Peer) same(q Peer) bool {
	return p.Key == q.Key && p.Node == q.Node && p.Type == q.Type &&
		p.Instance == q.Instance && p.Service == q.Service && p.Curve == q.Curve &&
		slices.Equal(p.Endpoints, q.Endpoints) && maps.Equal(p.Meta, q.Meta)
}

// EventKind says what happened to a peer.
type EventKind uint8

// The kinds of Event.
const (
	// PeerUp: a peer appeared.
	PeerUp EventKind = iota + 1
	// PeerUpdated: a known peer changed its endpoints, type or metadata.
	PeerUpdated
	// PeerDown: a peer left, stopped answering, or was removed.
	PeerDown
)

func (k EventKind) String() string {
	switch k {
	case PeerUp:
		return "up"
	case PeerUpdated:
		return "updated"
	case PeerDown:
		return "down"
	}
	return "unknown"
}

// Reasons given with PeerDown events.
const (
	// ReasonGoodbye: the peer announced it is leaving (mDNS goodbye, TTL 0).
	ReasonGoodbye = "goodbye"
	// ReasonExpired: the peer did not answer for the watcher's expiry time.
	ReasonExpired = "expired"
	// ReasonUnreachable: ReportUnreachable was called for one of the
	// peer's endpoints and no source confirmed the peer within the
	// unreachable timeout.
	ReasonUnreachable = "unreachable"
	// ReasonRemoved: a static or DNS SRV source no longer lists the peer.
	ReasonRemoved = "removed"
)

// Event is delivered on a Watcher's event channels.
type Event struct {
	Kind EventKind
	// Peer is the peer's state after the event; for PeerDown, its last
	// known state.
	Peer Peer
	// Reason is set for PeerDown: ReasonGoodbye, ReasonExpired,
	// ReasonUnreachable or ReasonRemoved.
	Reason string
	// Time is when the watcher decided the event.
	Time time.Time
	// LastSeen is when the peer was last seen alive: its last announcement
	// or answer, or a connection to it (Touch). For PeerUp and PeerUpdated
	// it is Time; for PeerDown it is earlier than Time (a peer that expired
	// was last seen an expiry time before).
	LastSeen time.Time
}
