package socket

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
)

// xsubProto is libzmq's XSUB: SUB with its subscriptions sent as messages.
// Send takes subscription messages (0x01 then a prefix subscribes, 0x00
// then a prefix cancels, the ZMTP 3.0 form our SUB and libzmq's send) and
// passes every other message to all publishers as it is; Recv fair-queues
// what the publishers send that matches a subscription.
//
// Its subscriptions are a set of prefixes, the union of what was
// subscribed and not cancelled: every subscribe message is passed on (so a
// verbose XPUB upstream sees each one), a cancel only when it removes a
// prefix from the set, and each publisher that attaches is sent the whole
// set first, once per prefix. A forwarder that feeds it an XPUB's
// subscription messages (the pub/sub proxy) therefore gives every
// publisher, including one that connects or reconnects later, exactly the
// union of its subscribers' prefixes. (libzmq's XSUB counts subscribes and
// cancels a prefix when the count falls to zero; fed by a verbose XPUB that
// count never does, and the prefix stays subscribed upstream.)
type xsubProto struct {
	s     *Socket
	subs  subscriptions // for incoming: read without mu
	smu   sync.Mutex    // serialises subscription sends: a cancel never overtakes its subscribe
	mu    sync.Mutex
	pipes map[*pipe]struct{} // guarded by mu
}

func newXSubProto(s *Socket) *xsubProto {
	return &xsubProto{s: s, pipes: make(map[*pipe]struct{})}
}

func (r *xsubProto) attach(p *pipe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pipes[p] = struct{}{}
	for _, prefix := range r.subs.list() {
		p.enqueue(subMsg(prefix, true), true)
	}
}

func (r *xsubProto) detach(p *pipe) {
	r.mu.Lock()
	delete(r.pipes, p)
	r.mu.Unlock()
}

// send passes a subscription on to every publisher, waiting while one's
// queue is full (a subscription is never dropped), and any other message
// to every publisher whose queue has room (the others miss it; the drop is
// counted, as PUB counts its own).
func (r *xsubProto) send(ctx context.Context, m Msg) error {
	return r.sendAs(ctx, m, false)
}

// sendAs is send; with force (Socket.Subscribe, as SUB does) a
// subscription is queued past a full publisher's mark instead of waiting.
func (r *xsubProto) sendAs(ctx context.Context, m Msg, force bool) error {
	prefix, on, sub := subscription(m)
	if sub {
		r.smu.Lock()
		defer r.smu.Unlock()
	}
	r.mu.Lock()
	if sub {
		changed, _ := r.subs.add(prefix, on, math.MaxInt)
		if !on && !changed {
			r.mu.Unlock()
			return nil
		}
	}
	ps := slices.Collect(maps.Keys(r.pipes))
	r.mu.Unlock()
	for _, p := range ps {
		if !sub {
			if err := p.enqueue(m, false); err != nil {
				p.stats.drops.Add(1)
				r.s.stats.drops.Add(1)
			}
			continue
		}
		if force {
			p.enqueue(m, true)
			continue
		}
		if err := sendTo(ctx, r.s, p, m, ErrPeerLost); err != nil && !errors.Is(err, ErrPeerLost) {
			return err
		}
	}
	return nil
}

func (r *xsubProto) incoming(p *pipe, m Msg) (Msg, bool) {
	if r.subs.match(m.Frames[0]) {
		return m, true
	}
	p.discard(1)
	return Msg{}, false
}

func (r *xsubProto) command(*pipe, string, []byte) {}

func (r *xsubProto) recv(ctx context.Context) (Msg, *pipe, error) {
	return r.s.pop(ctx)
}
func (*xsubProto) recvIsPop() {}
