package socket

import "context"

// dealerRouter: Send round-robins over ready peers, Recv fair-queues. No
// envelope is added or removed.
type dealerRouter struct{ lb }

func (r *dealerRouter) send(ctx context.Context, m Msg) error {
	_, err := r.lb.send(ctx, m, nil)
	return err
}
func (r *dealerRouter) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
func (r *dealerRouter) incoming(_ *pipe, m Msg) (Msg, bool) { return m, true }
func (r *dealerRouter) command(*pipe, string, []byte)       {}
