package socket

import "context"

// pullRouter: Recv fair-queues over PUSH peers; Send is not allowed.
type pullRouter struct{ s *Socket }

func (r *pullRouter) attach(*pipe)                        {}
func (r *pullRouter) detach(*pipe)                        {}
func (r *pullRouter) command(*pipe, string, []byte)       {}
func (r *pullRouter) incoming(_ *pipe, m Msg) (Msg, bool) { return m, true }
func (r *pullRouter) send(context.Context, Msg) error     { return errState(r.s, "Send") }
func (r *pullRouter) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
