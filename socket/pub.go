package socket

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
)

// subscriptions is what one SUB peer asked a PUB for: prefixes with a count
// (the same prefix subscribed twice needs two cancels, as in libzmq).
// Matching reads an immutable snapshot, so the publisher's hot path takes no
// lock and writes no shared memory.
type subscriptions struct {
	mu    sync.Mutex
	count map[string]int              // guarded by mu
	snap  atomic.Pointer[subSnapshot] // written holding mu, read without
}

type subSnapshot struct {
	all      bool
	prefixes []string
}

func (s *subscriptions) add(prefix []byte, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = make(map[string]int)
	}
	k := string(prefix)
	switch {
	case on:
		s.count[k]++
	case s.count[k] <= 1:
		delete(s.count, k)
	default:
		s.count[k]--
	}
	snap := &subSnapshot{}
	for p := range s.count {
		if p == "" {
			snap.all = true
		}
		snap.prefixes = append(snap.prefixes, p)
	}
	s.snap.Store(snap)
}

func (s *subscriptions) match(topic []byte) bool {
	snap := s.snap.Load()
	if snap == nil {
		return false
	}
	if snap.all {
		return true
	}
	for _, k := range snap.prefixes {
		if len(topic) >= len(k) && string(topic[:len(k)]) == k {
			return true
		}
	}
	return false
}

// pubProto fans each message out to the peers whose subscriptions match its
// first frame. It never blocks: a peer whose queue is full misses the
// message, and the drop is counted.
type pubProto struct {
	s     *Socket
	mu    sync.Mutex
	pipes atomic.Pointer[[]*pipe] // copy-on-write: written holding mu, read without (Send)
}

func newPubProto(s *Socket) *pubProto {
	r := &pubProto{s: s}
	r.pipes.Store(&[]*pipe{})
	return r
}

func (r *pubProto) attach(p *pipe) {
	r.mu.Lock()
	old := *r.pipes.Load()
	n := append(append(make([]*pipe, 0, len(old)+1), old...), p)
	r.pipes.Store(&n)
	r.mu.Unlock()
}

func (r *pubProto) detach(p *pipe) {
	r.mu.Lock()
	old := *r.pipes.Load()
	n := make([]*pipe, 0, len(old))
	for _, q := range old {
		if q != p {
			n = append(n, q)
		}
	}
	r.pipes.Store(&n)
	r.mu.Unlock()
}

func (r *pubProto) send(_ context.Context, m Msg) error {
	topic := m.Frames[0]
	for _, p := range *r.pipes.Load() {
		if !p.subs.match(topic) {
			continue
		}
		if err := p.enqueue(m, false); err != nil {
			p.stats.drops.Add(1)
			r.s.stats.drops.Add(1)
		}
	}
	return nil
}

func (r *pubProto) recv(context.Context) (Msg, *pipe, error) {
	return Msg{}, nil, errState(r.s, "Recv")
}

// incoming takes ZMTP 3.0 subscription messages (0x01 prefix subscribes,
// 0x00 cancels); anything else a SUB sends is dropped.
func (r *pubProto) incoming(p *pipe, m Msg) (Msg, bool) {
	if len(m.Frames) == 1 && len(m.Frames[0]) > 0 {
		switch f := m.Frames[0]; f[0] {
		case 1:
			p.subs.add(f[1:], true)
			return Msg{}, false
		case 0:
			p.subs.add(f[1:], false)
			return Msg{}, false
		}
	}
	p.discard(1)
	return Msg{}, false
}

// command takes ZMTP 3.1 SUBSCRIBE and CANCEL commands.
func (r *pubProto) command(p *pipe, name string, data []byte) {
	p.subs.add(bytes.Clone(data), name == "SUBSCRIBE")
}
