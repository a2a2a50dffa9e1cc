package pattern

import (
	"context"
	"errors"
	"fmt"

	"github.com/zpeer/zpeer/socket"
)

// callError is what a pattern call returns for err, an error from the
// socket or the context it waited on: a timeout, whichever layer saw it,
// matches ErrTimeout (and still the socket's error and
// context.DeadlineExceeded), and a closed socket is ErrClosed.
func callError(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrTimeout), errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, socket.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, socket.ErrClosed):
		return ErrClosed
	}
	return err
}
