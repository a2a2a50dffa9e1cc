package discovery

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Connector is what AutoConnect drives: a socket, or a pattern over one.
// Endpoints are those of Peer.Endpoint, e.g. "tcp://10.0.0.5:5555".
// Connect should not block on the network (ZeroMQ sockets connect in the
// background and reconnect by themselves).
type Connector interface {
	Connect(endpoint string) error
	Disconnect(endpoint string) error
}

// PeerConnector is a Connector that decides per peer how to connect, for
// example with the CURVE key the peer announced, or not at all for a peer
// it does not trust. AutoConnect calls ConnectPeer instead of Connect when
// c implements it. An error wrapping ErrDeclined declines the peer: it is
// not retried until its announcement changes. Any other error is retried
// every AutoConnectRetry, as for Connect.
type PeerConnector interface {
	Connector
	ConnectPeer(p Peer, endpoint string) error
}

// ErrDeclined is returned by a PeerConnector's ConnectPeer to decline a
// peer (see PeerConnector).
var ErrDeclined = errors.New("discovery: peer declined")

// compatible is ZMTP 3's table of socket types that may talk to each other
// (RFC 23/ZMTP, section "The Socket Types"; RFC 28, 29, 30).
var compatible = map[string][]string{
	"REQ":    {"REP", "ROUTER"},
	"REP":    {"REQ", "DEALER"},
	"DEALER": {"REP", "DEALER", "ROUTER"},
	"ROUTER": {"REQ", "DEALER", "ROUTER"},
	"PUB":    {"SUB", "XSUB"},
	"SUB":    {"PUB", "XPUB"},
	"XPUB":   {"SUB", "XSUB"},
	"XSUB":   {"PUB", "XPUB"},
	"PUSH":   {"PULL"},
	"PULL":   {"PUSH"},
	"PAIR":   {"PAIR"},
}

// Compatible reports whether a socket of type local may connect to a peer
// of type remote, following ZMTP's compatibility table: REQ-REP,
// REQ-ROUTER, DEALER-REP, DEALER-DEALER, DEALER-ROUTER, ROUTER-ROUTER,
// PUB-SUB, PUSH-PULL, PAIR-PAIR, with XPUB and XSUB as PUB and SUB. The
// relation is symmetric; case is ignored.
func Compatible(local, remote string) bool {
	for _, t := range compatible[strings.ToUpper(local)] {
		if t == strings.ToUpper(remote) {
			return true
		}
	}
	return false
}

// AutoConnectRetry is how often AutoConnect retries a Connect that failed,
// while the peer stays up.
const AutoConnectRetry = time.Second

// AutoConnect joins a socket of type localType to the service w watches:
// it connects c to the preferred endpoint of every compatible peer that is
// up (SUB to each PUB, PUSH to each PULL, REQ and DEALER to each REP and
// ROUTER, and the reverse: a PUB connects to SUBs that bind and announce),
// moves the connection when a peer's endpoint changes, and disconnects
// when the peer goes down. Several peers at one endpoint share one
// connection. A Connect that fails is retried every AutoConnectRetry while
// the peer is up; Disconnect errors are ignored.
//
// Run it on the connecting side: a socket that binds and announces does
// not normally also auto-connect, or both ends would dial each other.
//
// AutoConnect blocks until ctx is done (it returns ctx.Err()) or w is
// closed (ErrClosed); either way it first disconnects everything it
// connected. It calls c from its own goroutine, never from an I/O one.
func AutoConnect(ctx context.Context, w *Watcher, c Connector, localType string) error {
	lt, err := parseSocketType(localType)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := w.Subscribe(ctx)
	a := &autoConn{c: c, conns: make(map[string]string), refs: make(map[string]int), pending: make(map[string]string), peers: make(map[string]Peer)}
	a.pc, _ = c.(PeerConnector)
	defer a.disconnectAll()
	retry := time.NewTicker(AutoConnectRetry)
	defer retry.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return ErrClosed
			}
			key := ev.Peer.Key
			want := ""
			if ev.Kind != PeerDown && Compatible(lt, ev.Peer.Type) {
				want = ev.Peer.Endpoint()
			}
			delete(a.pending, key)
			old, known := a.peers[key]
			if want == "" {
				delete(a.peers, key)
			} else {
				a.peers[key] = ev.Peer
			}
			// A new CURVE key at the same endpoint is a new connection.
			rekey := a.pc != nil && known && old.Curve != ev.Peer.Curve
			if cur := a.conns[key]; cur != want || rekey {
				if cur != "" {
					a.release(key)
				}
				if want != "" {
					a.acquire(key, want)
				}
			}
		case <-retry.C:
			for key, ep := range a.pending {
				delete(a.pending, key)
				a.acquire(key, ep)
			}
		}
	}
}

// autoConn tracks AutoConnect's connections: peer key to endpoint, and a
// reference count per endpoint.
type autoConn struct {
	c       Connector
	conns   map[string]string
	refs    map[string]int
	pending map[string]string // failed Connects to retry
	pc      PeerConnector     // c, when it decides per peer
	peers   map[string]Peer   // the last state of each compatible peer
}

func (a *autoConn) acquire(key, ep string) {
	if a.refs[ep] == 0 {
		var err error
		if a.pc != nil {
			err = a.pc.ConnectPeer(a.peers[key], ep)
		} else {
			err = a.c.Connect(ep)
		}
		if errors.Is(err, ErrDeclined) {
			return
		}
		if err != nil {
			a.pending[key] = ep
			return
		}
	}
	a.refs[ep]++
	a.conns[key] = ep
}

func (a *autoConn) release(key string) {
	ep := a.conns[key]
	delete(a.conns, key)
	if a.refs[ep]--; a.refs[ep] <= 0 {
		delete(a.refs, ep)
		_ = a.c.Disconnect(ep)
	}
}

func (a *autoConn) disconnectAll() {
	for ep := range a.refs {
		_ = a.c.Disconnect(ep)
	}
	clear(a.refs)
	clear(a.conns)
}
