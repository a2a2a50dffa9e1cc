package socket

import "context"

// pushProto: Send round-robins over ready PULL peers; nothing is received.
type pushProto struct{ lb }

func (r *pushProto) send(ctx context.Context, m Msg) error {
	_, err := r.lb.send(ctx, &m, nil)
	return err
}
func (r *pushProto) sendLB() *lb { return &r.lb }
func (r *pushProto) recv(context.Context) (Msg, *pipe, error) {
	return Msg{}, nil, errState(r.s, "Recv")
}

// A PULL peer has nothing to say; anything it sends is dropped.
func (r *pushProto) incoming(p *pipe, _ Msg) (Msg, bool) {
	p.discard(1)
	return Msg{}, false
}
func (r *pushProto) command(*pipe, string, []byte) {}
