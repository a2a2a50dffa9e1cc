package socket

import "context"

// pullProto: Recv fair-queues over PUSH peers; Send is not allowed.
type pullProto struct{ s *Socket }

func (r *pullProto) attach(*pipe)                        {}
func (r *pullProto) detach(*pipe)                        {}
func (r *pullProto) command(*pipe, string, []byte)       {}
func (r *pullProto) incoming(_ *pipe, m Msg) (Msg, bool) { return m, true }
func (r *pullProto) send(context.Context, Msg) error     { return errState(r.s, "Send") }
func (r *pullProto) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
func (*pullProto) recvIsPop()      {}
func (*pullProto) incomingPasses() {}
