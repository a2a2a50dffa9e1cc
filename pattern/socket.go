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
// then, when hooks is not nil, the pattern's peer hooks. socket.WithPeerHooks
// adds to the hooks given before it, so hooks the user gave with it run
// first (a user's Attach sees a peer before the pattern uses it).
func newSocket(t socket.Type, o *options, hooks *socket.PeerHooks, own ...socket.Option) (*socket.Socket, error) {
	// The pattern's logger first: the socket logs the peers it refuses
	// (rate-limited), the only trace a refusal leaves on a server.
	opts := append(append([]socket.Option{socket.WithLogger(o.logger)}, own...), o.sockOpts...)
	if hooks != nil {
		opts = append(opts, socket.WithPeerHooks(*hooks))
	}
	return socket.New(t, opts...)
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
