package socket

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// repProto: Recv fair-queues requests, keeps their envelope (every frame up
// to and including the empty delimiter) and the peer; Send must follow and
// goes back to that peer with the envelope restored (RFC 28).
type repProto struct {
	s *Socket

	// The request being answered, guarded by mu.
	mu       sync.Mutex
	mustSend bool
	cur      *pipe
	env      [][]byte
}

func newRepProto(s *Socket) *repProto { return &repProto{s: s} }

func (r *repProto) attach(*pipe)                  {}
func (r *repProto) detach(*pipe)                  {}
func (r *repProto) command(*pipe, string, []byte) {}

// incoming drops requests without an envelope delimiter.
func (r *repProto) incoming(p *pipe, m Msg) (Msg, bool) {
	for _, f := range m.Frames {
		if len(f) == 0 {
			return m, true
		}
	}
	p.discard(1)
	return Msg{}, false
}

func (r *repProto) recv(ctx context.Context) (Msg, *pipe, error) {
	r.mu.Lock()
	if r.mustSend {
		r.mu.Unlock()
		return Msg{}, nil, fmt.Errorf("%w: REP must send the reply before receiving again", ErrState)
	}
	r.mu.Unlock()
	m, p, err := r.s.fq.pop(ctx, nil)
	if err != nil {
		return Msg{}, nil, err
	}
	i := 0
	for len(m.Frames[i]) != 0 {
		i++
	}
	r.mu.Lock()
	// The envelope is kept for the reply: copied, since the caller may
	// Free the request first.
	env := make([][]byte, i+1)
	for j, f := range m.Frames[:i+1] {
		env[j] = bytes.Clone(f)
	}
	r.mustSend, r.cur, r.env = true, p, env
	r.mu.Unlock()
	m.Frames = m.Frames[i+1:] // the rest of m (its memory, for Free) stays
	return m, p, nil
}

func (r *repProto) send(ctx context.Context, m Msg) error {
	r.mu.Lock()
	if !r.mustSend {
		r.mu.Unlock()
		return fmt.Errorf("%w: REP must receive a request before sending", ErrState)
	}
	p, env := r.cur, r.env
	r.mustSend, r.cur, r.env = false, nil, nil
	r.mu.Unlock()
	frames := make([][]byte, 0, len(env)+len(m.Frames))
	frames = append(append(frames, env...), m.Frames...)
	return sendTo(ctx, r.s, p, Msg{Frames: frames, Buf: m.Buf}, ErrNoSuchPeer)
}
