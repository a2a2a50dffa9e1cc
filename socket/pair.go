package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// errPairTaken is why a PAIR socket drops a second peer.
var errPairTaken = errors.New("socket: PAIR already has its peer")

// pairProto: exactly one peer (RFC 31 exclusive pair). Send queues to it,
// waiting while there is none or its queue is full; Recv takes what it
// sends. A second connection is closed after its handshake, as libzmq does:
// the first peer keeps the socket until it goes.
type pairProto struct {
	s     *Socket
	mu    sync.Mutex
	claim *pipe // guarded by mu: the pipe admitted, attached or about to be
	pipe  *pipe // guarded by mu: the attached pipe, what Send routes to
}

// admit claims the socket for p, unless a live pipe has it.
func (r *pairProto) admit(p *pipe) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claim != nil && r.claim != p && !r.claim.isDone() {
		return errPairTaken
	}
	r.claim = p
	return nil
}

func (r *pairProto) attach(p *pipe) {
	r.mu.Lock()
	r.pipe = p
	r.mu.Unlock()
}

func (r *pairProto) detach(p *pipe) {
	r.mu.Lock()
	if r.pipe == p {
		r.pipe = nil
	}
	if r.claim == p {
		r.claim = nil
	}
	r.mu.Unlock()
}

func (r *pairProto) peer() *pipe {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pipe
}

func (r *pairProto) send(ctx context.Context, m Msg) error {
	for {
		wait := r.s.readyWait()
		p := r.peer()
		if p != nil {
			err := p.enqueue(m, false)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errFull) && !errors.Is(err, ErrClosed) {
				return fmt.Errorf("socket: PAIR send: %w", err)
			}
		}
		if r.s.opts.NoBlock {
			if p == nil {
				return ErrNoPeers
			}
			return ErrWouldBlock
		}
		select {
		case <-wait:
		case <-r.s.closing:
			return ErrClosed
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
}

func (r *pairProto) sendTo(ctx context.Context, p *pipe, m Msg) error {
	return sendTo(ctx, r.s, p, m, ErrPeerLost)
}

func (r *pairProto) recv(ctx context.Context) (Msg, *pipe, error) { return r.s.pop(ctx) }
func (*pairProto) recvIsPop()                                     {}
func (*pairProto) incomingPasses()                                {}
func (r *pairProto) incoming(_ *pipe, m Msg) (Msg, bool)          { return m, true }
func (r *pairProto) command(*pipe, string, []byte)                {}
