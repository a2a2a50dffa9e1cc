package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// reqRouter: strict send/receive alternation (RFC 28). Send adds the empty
// delimiter frame and picks the next ready peer; Recv accepts exactly one
// reply, from that peer, and strips the delimiter. Replies from any other
// peer, or a second reply, are dropped. If the peer disconnects before it
// replies, Recv fails with ErrPeerLost and the socket may send again.
type reqRouter struct {
	lb
	rmu     sync.Mutex
	waiting bool
	cur     *pipe
	lost    chan struct{}
}

func newReqRouter(s *Socket) *reqRouter { return &reqRouter{lb: lb{s: s}} }

func (r *reqRouter) send(ctx context.Context, m Msg) error {
	r.rmu.Lock()
	if r.waiting {
		r.rmu.Unlock()
		return fmt.Errorf("%w: REQ must receive the reply before sending again", ErrState)
	}
	r.waiting = true
	r.lost = make(chan struct{})
	r.rmu.Unlock()

	frames := make([][]byte, 0, len(m.Frames)+1)
	frames = append(frames, []byte{})
	frames = append(frames, m.Frames...)
	_, err := r.lb.send(ctx, Msg{Frames: frames}, func(p *pipe) {
		r.rmu.Lock()
		r.cur = p
		r.rmu.Unlock()
	})
	if err != nil {
		r.rmu.Lock()
		r.waiting, r.cur = false, nil
		r.rmu.Unlock()
	}
	return err
}

func (r *reqRouter) recv(ctx context.Context) (Msg, error) {
	r.rmu.Lock()
	if !r.waiting {
		r.rmu.Unlock()
		return Msg{}, fmt.Errorf("%w: REQ must send a request before receiving", ErrState)
	}
	lost := r.lost
	r.rmu.Unlock()
	m, _, err := r.s.fq.pop(ctx, lost)
	if errors.Is(err, errAbort) {
		err = ErrPeerLost
		if r.s.isClosed() { // Close ends every pipe: not a lost peer
			err = ErrClosed
		}
	}
	if err == nil || errors.Is(err, ErrPeerLost) {
		r.rmu.Lock()
		r.waiting, r.cur = false, nil
		r.rmu.Unlock()
	}
	return m, err
}

func (r *reqRouter) incoming(p *pipe, m Msg) (Msg, bool) {
	r.rmu.Lock()
	ok := r.waiting && r.cur == p && len(m.Frames) >= 2 && len(m.Frames[0]) == 0
	if ok {
		r.cur = nil // one reply only
	}
	r.rmu.Unlock()
	if !ok {
		p.stats.drops.Add(1)
		r.s.stats.drops.Add(1)
		return Msg{}, false
	}
	return Msg{Frames: m.Frames[1:]}, true
}

func (r *reqRouter) detach(p *pipe) {
	r.lb.detach(p)
	r.rmu.Lock()
	if r.waiting && r.cur == p {
		r.cur = nil
		close(r.lost)
	}
	r.rmu.Unlock()
}

func (r *reqRouter) command(*pipe, string, []byte) {}
