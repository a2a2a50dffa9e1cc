package main

import (
	"context"

	"github.com/zpeer/zpeer/socket"
)

// lastValueTopics bounds pub --last-value's cache.
const lastValueTopics = 10000

// newCache makes pub --last-value's socket: an XPUB in manual mode under a
// last-value cache, whose Serve runs until the socket closes.
func (s *session) newCache(opts []socket.Option) (*socket.Socket, error) {
	sock, err := socket.New(socket.XPUB, append(opts, socket.WithXPubManual())...)
	if err != nil {
		return nil, usageError{err}
	}
	lvc, err := socket.NewLastValueCache(sock, lastValueTopics)
	if err != nil {
		sock.Close()
		return nil, err
	}
	s.lvc, s.lvcDone = lvc, make(chan struct{})
	go func() {
		defer close(s.lvcDone)
		lvc.Serve(context.Background())
	}()
	return sock, nil
}
