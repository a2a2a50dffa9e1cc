package socket

import (
	"context"
	"math"
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

// subscribe counts Subscribe and Unsubscribe calls per prefix, as libzmq's
// SUB does: every Subscribe is sent to the publishers (a verbose XPUB wants
// to see each), a cancel only when the last Subscribe of the prefix is
// undone, since a publisher keeps a set of prefixes, not a count.
func (r *subProto) subscribe(prefix string, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.count[prefix]
	switch {
	case !on && n == 0:
		return nil
	case on:
		r.count[prefix] = n + 1
	case n == 1:
		delete(r.count, prefix)
	default:
		r.count[prefix] = n - 1
		return nil
	}
	if n == 0 || !on {
		r.subs.add([]byte(prefix), on, math.MaxInt)
	}
	m := subMsg(prefix, on)
	for p := range r.pipes {
		p.enqueue(m, true)
	}
	return nil
}

// attach sends the subscriptions to a new publisher: once per prefix.
func (r *subProto) attach(p *pipe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pipes[p] = struct{}{}
	for prefix := range r.count {
		p.enqueue(subMsg(prefix, true), true)
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
func (*subProto) recvIsPop()       {}
func (*subProto) incomingFilters() {}
