package socket

import (
	"context"
	"sync"
)

// subProto keeps the socket's subscriptions, sends them to every publisher
// (again after each reconnect) and filters what arrives by them too, in case
// a publisher does not filter.
type subProto struct {
	s     *Socket
	subs  subscriptions // for incoming: read without mu
	mu    sync.Mutex
	count map[string]int     // guarded by mu
	pipes map[*pipe]struct{} // guarded by mu
}

func newSubProto(s *Socket) *subProto {
	return &subProto{s: s, count: make(map[string]int), pipes: make(map[*pipe]struct{})}
}

func subMsg(prefix string, on bool) Msg {
	f := make([]byte, 1+len(prefix))
	if on {
		f[0] = 1
	}
	copy(f[1:], prefix)
	return Msg{Frames: [][]byte{f}}
}

func (r *subProto) subscribe(prefix string, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !on && r.count[prefix] == 0 {
		return nil
	}
	if on {
		r.count[prefix]++
	} else if r.count[prefix]--; r.count[prefix] == 0 {
		delete(r.count, prefix)
	}
	r.subs.add([]byte(prefix), on)
	m := subMsg(prefix, on)
	for p := range r.pipes {
		p.enqueue(m, true)
	}
	return nil
}

func (r *subProto) attach(p *pipe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pipes[p] = struct{}{}
	for prefix, n := range r.count {
		m := subMsg(prefix, true)
		for range n {
			p.enqueue(m, true)
		}
	}
}

func (r *subProto) detach(p *pipe) {
	r.mu.Lock()
	delete(r.pipes, p)
	r.mu.Unlock()
}

func (r *subProto) incoming(p *pipe, m Msg) (Msg, bool) {
	if r.subs.match(m.Frames[0]) {
		return m, true
	}
	p.discard(1)
	return Msg{}, false
}

func (r *subProto) command(*pipe, string, []byte) {}

func (r *subProto) send(context.Context, Msg) error { return errState(r.s, "Send") }

func (r *subProto) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
