package socket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// reqProto: strict send/receive alternation (RFC 28). Send adds the empty
// delimiter frame and picks the next ready peer; Recv accepts exactly one
// reply, from that peer, and strips the delimiter. Replies from any other
// peer, or a second reply, are dropped. If the peer disconnects before it
// replies, Recv fails with ErrPeerLost and the socket may send again.
//
// With WithRelaxedREQ (libzmq's ZMQ_REQ_RELAXED with ZMQ_REQ_CORRELATE) a
// Send while a reply is outstanding abandons that request, and each request
// carries a 4-byte request id frame before the delimiter, which any RFC 28
// REP echoes back: a late reply to an abandoned request is recognised and
// dropped.
type reqProto struct {
	lb
	relaxed bool

	// The request in flight, guarded by rmu.
	rmu     sync.Mutex
	waiting bool          // a request was sent and its reply not received
	cur     *pipe         // the peer the request went to, until it replies
	lost    chan struct{} // closed when cur goes before replying
	id      uint32        // the request id (relaxed mode)
}

func newReqProto(s *Socket) *reqProto {
	return &reqProto{lb: lb{s: s}, relaxed: s.opts.RelaxedREQ, id: rand.Uint32()}
}

func (r *reqProto) send(ctx context.Context, m Msg) error { return r.request(ctx, m, nil) }

// sendTo sends the request to p rather than to the next ready peer.
func (r *reqProto) sendTo(ctx context.Context, p *pipe, m Msg) error {
	return r.request(ctx, m, p)
}

// request sends m as the next request: to the next ready peer, or to
// target when it is not nil.
func (r *reqProto) request(ctx context.Context, m Msg, target *pipe) error {
	r.rmu.Lock()
	if r.waiting && !r.relaxed {
		r.rmu.Unlock()
		return fmt.Errorf("%w: REQ must receive the reply before sending again", ErrState)
	}
	r.waiting = true
	r.lost = make(chan struct{})
	r.cur = nil
	r.id++
	id := r.id
	if r.relaxed {
		// a reply already accepted for the abandoned request is stale now
		for {
			if _, _, ok := r.s.fq.tryPop(); !ok {
				break
			}
		}
	}
	r.rmu.Unlock()

	frames := make([][]byte, 0, len(m.Frames)+2)
	if r.relaxed {
		frames = append(frames, binary.BigEndian.AppendUint32(nil, id))
	}
	frames = append(frames, []byte{})
	frames = append(frames, m.Frames...)
	before := func(p *pipe) {
		r.rmu.Lock()
		r.cur = p
		r.rmu.Unlock()
	}
	var err error
	if target != nil {
		before(target)
		err = sendTo(ctx, r.s, target, Msg{Frames: frames, Buf: m.Buf}, ErrPeerLost)
	} else {
		_, err = r.lb.send(ctx, &Msg{Frames: frames, Buf: m.Buf}, before)
	}
	if err != nil {
		r.rmu.Lock()
		r.waiting, r.cur = false, nil
		r.rmu.Unlock()
	}
	return err
}

func (r *reqProto) recv(ctx context.Context) (Msg, *pipe, error) {
	r.rmu.Lock()
	if !r.waiting {
		r.rmu.Unlock()
		return Msg{}, nil, fmt.Errorf("%w: REQ must send a request before receiving", ErrState)
	}
	lost := r.lost
	r.rmu.Unlock()
	m, p, err := r.s.fq.pop(ctx, lost)
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
	return m, p, err
}

func (r *reqProto) incoming(p *pipe, m Msg) (Msg, bool) {
	skip := 1 // the delimiter
	r.rmu.Lock()
	ok := r.waiting && r.cur == p
	if r.relaxed {
		skip = 2
		ok = ok && len(m.Frames) >= 3 && len(m.Frames[0]) == 4 && binary.BigEndian.Uint32(m.Frames[0]) == r.id
	}
	ok = ok && len(m.Frames) > skip && len(m.Frames[skip-1]) == 0
	if ok {
		r.cur = nil // one reply only
	}
	r.rmu.Unlock()
	if !ok {
		p.discard(1)
		return Msg{}, false
	}
	m.Frames = m.Frames[skip:] // the rest of m (its memory, for Free) stays
	return m, true
}

func (r *reqProto) detach(p *pipe) {
	r.lb.detach(p)
	r.rmu.Lock()
	if r.waiting && r.cur == p {
		r.cur = nil
		close(r.lost)
	}
	r.rmu.Unlock()
}

func (r *reqProto) command(*pipe, string, []byte) {}
