package socket

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

// subscriptions is the set of prefixes one subscriber asked a PUB or XPUB
// for. As in libzmq it is a set, not a count: subscribing twice to a prefix
// is the same as once, and one cancel removes it (a SUB sends the cancel
// only when its own last Subscribe of the prefix is undone). Matching reads
// an immutable snapshot, so the publisher's hot path takes no lock and
// writes no shared memory.
type subscriptions struct {
	mu   sync.Mutex
	set  map[string]struct{}         // guarded by mu
	snap atomic.Pointer[subSnapshot] // written holding mu, read without
}

type subSnapshot struct {
	all      bool
	prefixes []string
}

// errTooManySubs is why a subscription beyond the per-peer limit is
// refused.
var errTooManySubs = errors.New("socket: too many subscriptions")

// add adds (on) or removes prefix and reports whether the set changed. A
// new prefix beyond max prefixes is refused with errTooManySubs.
func (s *subscriptions) add(prefix []byte, on bool, max int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[string]struct{})
	}
	_, had := s.set[string(prefix)]
	switch {
	case on == had:
		return false, nil
	case on && len(s.set) >= max:
		return false, errTooManySubs
	case on:
		s.set[string(prefix)] = struct{}{}
	default:
		delete(s.set, string(prefix))
	}
	snap := &subSnapshot{prefixes: make([]string, 0, len(s.set))}
	for p := range s.set {
		if p == "" {
			snap.all = true
		}
		snap.prefixes = append(snap.prefixes, p)
	}
	s.snap.Store(snap)
	return true, nil
}

// list returns the prefixes in the set.
func (s *subscriptions) list() []string {
	if snap := s.snap.Load(); snap != nil {
		return snap.prefixes
	}
	return nil
}

// len returns the number of prefixes in the set.
func (s *subscriptions) len() int { return len(s.list()) }

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

// send queues m for every matching subscriber with room. When one's queue
// is full while its writer goroutine is not writing (woken, waiting for a
// processor), the publisher yields its processor once before returning:
// a publisher that never blocks would otherwise hold it until preempted,
// dropping message after message for the writers that would drain those
// queues. It never waits: a subscriber stalled in a write (its peer not
// reading) costs no yield, and Send returns as soon as the publisher runs
// again.
func (r *pubProto) send(_ context.Context, m Msg) error {
	topic := m.Frames[0]
	yield := false
	for _, p := range *r.pipes.Load() {
		if !p.subs.match(topic) {
			continue
		}
		if err := p.enqueue(m, false); err != nil {
			p.stats.drops.Add(1)
			r.s.stats.drops.Add(1)
			yield = yield || p.writerBehind()
		}
	}
	if yield {
		runtime.Gosched()
	}
	return nil
}

func (r *pubProto) recv(context.Context) (Msg, *pipe, error) {
	return Msg{}, nil, errState(r.s, "Recv")
}

// incoming takes ZMTP 3.0 subscription messages (0x01 prefix subscribes,
// 0x00 cancels); anything else a SUB sends is dropped, and so is a
// subscription over the limits (WithSubscriptionLimits).
func (r *pubProto) incoming(p *pipe, m Msg) (Msg, bool) {
	if prefix, on, ok := subscription(m); ok {
		r.s.subscribePipe(p, prefix, on)
		return Msg{}, false
	}
	p.discard(1)
	return Msg{}, false
}

// command takes ZMTP 3.1 SUBSCRIBE and CANCEL commands.
func (r *pubProto) command(p *pipe, name string, data []byte) {
	r.s.subscribePipe(p, data, name == zmq4.CmdSubscribe)
}

// subscription reports whether m is a ZMTP 3.0 subscription message (one
// frame: 0x01 then the prefix to subscribe, or 0x00 then the prefix to
// cancel) and returns its prefix.
func subscription(m Msg) (prefix []byte, on, ok bool) {
	if len(m.Frames) != 1 || len(m.Frames[0]) == 0 || m.Frames[0][0] > 1 {
		return nil, false, false
	}
	return m.Frames[0][1:], m.Frames[0][0] == 1, true
}

// subscribePipe changes p's subscriptions within the socket's limits and
// reports whether they changed. A refused subscription is counted as a
// discarded message.
func (s *Socket) subscribePipe(p *pipe, prefix []byte, on bool) bool {
	if on && len(prefix) > s.opts.MaxPrefix {
		p.discard(1)
		return false
	}
	changed, err := p.subs.add(prefix, on, s.opts.MaxSubs)
	if err != nil {
		p.discard(1)
	}
	if changed {
		s.subsChanged.fire()
	}
	return changed
}
