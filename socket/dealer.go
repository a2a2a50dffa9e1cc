package socket

import "context"

// dealerProto: Send round-robins over ready peers, Recv fair-queues. No
// envelope is added or removed.
type dealerProto struct{ lb }

func (r *dealerProto) send(ctx context.Context, m Msg) error {
	_, err := r.lb.send(ctx, &m, nil)
	return err
}
func (r *dealerProto) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
func (*dealerProto) recvIsPop()                            {}
func (*dealerProto) incomingPasses()                       {}
func (r *dealerProto) sendLB() *lb                         { return &r.lb }
func (r *dealerProto) incoming(_ *pipe, m Msg) (Msg, bool) { return m, true }
func (r *dealerProto) command(*pipe, string, []byte)       {}
