package pattern

import (
	"github.com/zpeer/zpeer/socket"
)

// What the pattern layer shares about its sockets: how they are made,
// bound and connected, and the frames every pattern uses.

// empty is the REQ/REP delimiter frame. It is never modified.
var empty = []byte{}

// newSocket creates the one socket of a pattern role: the pattern's own
// socket options first, then the user's (WithSocketOptions, so they win),
// then, when hooks is not nil, the pattern's peer hooks, called after any
// hooks the user gave with socket.WithPeerHooks (so that a user's Attach
// sees a peer before the pattern uses it).
func newSocket(t socket.Type, o *options, hooks *socket.PeerHooks, own ...socket.Option) (*socket.Socket, error) {
	// The pattern's logger first: the socket logs the peers it refuses
	// (rate-limited), the only trace a refusal leaves on a server.
	opts := append(append([]socket.Option{socket.WithLogger(o.logger)}, own...), o.sockOpts...)
	if hooks != nil {
		// The user's hooks, as their options set them. An option that
		// fails here fails again, with its error, in socket.New.
		var user socket.Options
		for _, opt := range o.sockOpts {
			if opt != nil {
				opt(&user)
			}
		}
		opts = append(opts, socket.WithPeerHooks(chainHooks(user.Hooks, *hooks)))
	}
	return socket.New(t, opts...)
}

// chainHooks calls first's hooks, then then's.
func chainHooks(first, then socket.PeerHooks) socket.PeerHooks {
	h := then
	if f, g := first.Attach, then.Attach; f != nil && g != nil {
		h.Attach = func(p *socket.Peer) { f(p); g(p) }
	} else if f != nil {
		h.Attach = f
	}
	if f, g := first.Detach, then.Detach; f != nil && g != nil {
		h.Detach = func(p *socket.Peer, err error) { f(p, err); g(p, err) }
	} else if f != nil {
		h.Detach = f
	}
	if f, g := first.Ready, then.Ready; f != nil && g != nil {
		h.Ready = func(p *socket.Peer) { f(p); g(p) }
	} else if f != nil {
		h.Ready = f
	}
	return h
}

// setup binds and connects s as the options say.
func setup(s *socket.Socket, o options) error {
	for _, ep := range o.binds {
		if _, err := s.Bind(ep); err != nil {
			return err
		}
	}
	for _, ep := range o.connects {
		if err := s.Connect(ep); err != nil {
			return err
		}
	}
	return nil
}
