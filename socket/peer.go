package socket

import (
	"context"
	"fmt"
)

// Peer is a handle on one connected peer (one connection) of a socket. It
// is the public face of the socket's pipe for that connection: one Peer per
// connection, the same pointer for its whole life, so it may serve as a map
// key. A reconnect to the same endpoint is a new Peer with a new ID. All
// methods are safe for concurrent use and keep working after the peer is
// gone (Ready is then false and Done is closed).
type Peer struct{ p *pipe }

// ID is unique within the socket's lifetime and never reused: the first
// peer is 1.
func (pr *Peer) ID() uint64 { return pr.p.id }

// Endpoint is the endpoint the peer came through: as given to Connect, or
// as Bind returned it.
func (pr *Peer) Endpoint() string { return pr.p.endpoint }

// Remote is the peer's network address.
func (pr *Peer) Remote() string { return pr.p.remote }

// Type is the peer's socket type from its READY metadata ("PULL").
func (pr *Peer) Type() string { return pr.p.peerType }

// Identity is the id the peer is addressed by: on a ROUTER socket its
// routing id (the first frame of what it sends), elsewhere the identity it
// announced in its handshake (empty when it announced none).
func (pr *Peer) Identity() []byte {
	p := pr.p
	p.wmu.Lock()
	id := p.routeID
	p.wmu.Unlock()
	if id != nil {
		return id
	}
	return p.identity
}

// Ready reports whether the peer is alive and its send queue is below the
// send high-water mark, so that SendTo would not block now.
func (pr *Peer) Ready() bool { return !pr.p.isDone() && pr.p.ready() }

// Done is closed when the peer is gone (its connection closed).
func (pr *Peer) Done() <-chan struct{} { return pr.p.done }

// Stats returns the peer's counters.
func (pr *Peer) Stats() PeerStats { return pr.p.peerStats() }

func (pr *Peer) String() string {
	return fmt.Sprintf("peer %d %s %s", pr.p.id, pr.p.peerType, pr.p.remote)
}

// PeerHooks tell the owner of a socket about its peers as the engine sees
// them, synchronously (mangos' AddPipe and RemovePipe, libzmq's
// xattach_pipe and xpipe_terminated). Any of them may be nil.
//
//   - Attach is called once per peer after its handshake, before any message
//     from it is delivered by Recv and before Send or SendTo may route to
//     it. It runs on the goroutine that performed the handshake: the
//     endpoint's dialer goroutine for Connect, a goroutine per accepted
//     connection for Bind.
//   - Detach is called exactly once per attached peer, after Attach has
//     returned, once the peer is gone: SendTo to it fails with ErrPeerLost
//     from then on (and already did a little earlier), and Done is closed.
//     The error says why. It runs on the goroutine that ended the
//     connection: the peer's reader or writer goroutine, its dialer
//     goroutine, or the caller of Close, Disconnect or Unbind.
//   - Ready is called when a peer that was at its send high-water mark has
//     room again. It runs on the peer's writer goroutine.
//
// Hooks never run on a goroutine inside Send, SendTo, Recv or RecvFrom, and
// never while the socket holds a lock that those need: a hook may call the
// methods of a Peer and of the socket (Stats, PeerList, a SendTo that does
// not block: to a Ready peer or with WithNoBlock), except Close, Disconnect
// and Unbind, which wait for the peers they end. Hooks must not block: the
// connection they are called for waits for them, and Detach holds up the
// Close or Disconnect that caused it. Hooks for different peers may run
// concurrently; those for one peer never do.
type PeerHooks struct {
	Attach func(*Peer)
	Detach func(*Peer, error)
	Ready  func(*Peer)
}

// WithPeerHooks adds hooks the engine calls as peers come, go, and get
// room to send again (see PeerHooks). It adds to the hooks set by an
// earlier WithPeerHooks rather than replacing them: each hook runs those
// given earlier first, then h's.
func WithPeerHooks(h PeerHooks) Option {
	return func(o *Options) error { o.Hooks = o.Hooks.then(h); return nil }
}

// then returns hooks that call first's, then next's.
func (first PeerHooks) then(next PeerHooks) PeerHooks {
	h := next
	if f, g := first.Attach, next.Attach; f != nil && g != nil {
		h.Attach = func(p *Peer) { f(p); g(p) }
	} else if f != nil {
		h.Attach = f
	}
	if f, g := first.Detach, next.Detach; f != nil && g != nil {
		h.Detach = func(p *Peer, err error) { f(p, err); g(p, err) }
	} else if f != nil {
		h.Detach = f
	}
	if f, g := first.Ready, next.Ready; f != nil && g != nil {
		h.Ready = func(p *Peer) { f(p); g(p) }
	} else if f != nil {
		h.Ready = f
	}
	return h
}

// SendTo queues m for one chosen peer, bypassing the socket type's load
// balancing. It is allowed on PUSH, DEALER and ROUTER sockets, where m goes
// as it is (a ROUTER needs no routing-id frame: the peer is named by p),
// and on REQ, where m is the request (with REQ's envelope and strict
// alternation: the reply is taken only from p). On other types it fails
// with ErrState.
//
// It blocks while p is at its send high-water mark, until there is room,
// ctx ends or the socket closes; with WithNoBlock it fails with
// ErrWouldBlock instead, and with a context already done it tries once
// (queued if p has room, ctx's error if not). It fails with ErrPeerLost once p is gone, and with
// ErrNoSuchPeer for a peer of another socket.
func (s *Socket) SendTo(ctx context.Context, p *Peer, m Msg) error {
	ps, ok := s.proto.(peerSender)
	if !ok {
		return errState(s, "SendTo")
	}
	if err := s.checkSend(&m); err != nil {
		return err
	}
	if p == nil || p.p.s != s {
		return fmt.Errorf("%w: not a peer of this socket", ErrNoSuchPeer)
	}
	return ps.sendTo(ctx, p.p, m)
}

// RecvFrom is Recv that also returns the peer the message came from. The
// peer may be gone by the time the message is read (messages of a gone
// peer stay deliverable): its Done channel is then closed.
func (s *Socket) RecvFrom(ctx context.Context) (Msg, *Peer, error) {
	m, p, err := s.proto.recv(ctx)
	if err != nil || p == nil {
		return m, nil, err
	}
	return m, &p.face, nil
}

// PeerList returns the peers attached now (a snapshot, in no order).
func (s *Socket) PeerList() []*Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Peer, 0, len(s.pipes))
	for p := range s.pipes {
		if p.attached {
			out = append(out, &p.face)
		}
	}
	return out
}
