package main

import (
	"context"
	"errors"
)

// runPair is pair: send the messages and print what comes back, at once.
// The command ends when receiving does (--count, --timeout, Ctrl-C), after
// the MESSAGE arguments are sent (lines of standard input still unread are
// not); a failed send ends it too.
func (s *session) runPair(ctx context.Context, args []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendErr := make(chan error, 1)
	go func() {
		err := s.runSend(ctx, args)
		if err != nil && !errors.Is(err, context.Canceled) {
			cancel()
		}
		sendErr <- err
	}()
	err := s.runRecv(ctx)
	if err == nil && len(args) > 0 {
		serr := <-sendErr
		if serr != nil && !errors.Is(serr, context.Canceled) {
			return serr
		}
		return nil
	}
	cancel()
	if serr := <-sendErr; serr != nil && !errors.Is(serr, context.Canceled) {
		return serr
	}
	return err
}
