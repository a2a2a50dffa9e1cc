package socket

import "context"

// pushRouter: Send round-robins over ready PULL peers; nothing is received.
type pushRouter struct{ lb }

func (r *pushRouter) send(ctx context.Context, m Msg) error {
	_, err := r.lb.send(ctx, m, nil)
	return err
}
func (r *pushRouter) recv(context.Context) (Msg, *pipe, error) {
	return Msg{}, nil, errState(r.s, "Recv")
}

// A PULL peer has nothing to say; anything it sends is dropped.
func (r *pushRouter) incoming(p *pipe, _ Msg) (Msg, bool) {
	p.discard(1)
	return Msg{}, false
}
func (r *pushRouter) command(*pipe, string, []byte) {}
