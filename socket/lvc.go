package socket

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// LastValueCache is a publisher that keeps the last message of each topic
// (its first frame) and gives a subscriber, as its subscription arrives,
// the current message of every cached topic the subscription matches,
// before anything published after: a dashboard that starts late is not
// blank. It is built on an XPUB socket in manual mode (WithXPubManual):
// Serve reads the subscription messages, sends the cached messages to the
// subscriber that asked, then subscribes it. Publishing (Send) and that
// hand-over take one lock, so a subscriber never gets a live message before
// the cached ones, and never a cached message older than one it got live.
//
// Cached messages are sent as they were published, byte for byte: an
// envelope keeps its sequence number, so a subscriber's gap counting stays
// right. Through a proxy (whose XPUB passes every subscribe up, see Proxy)
// the cached messages go to the proxy, which forwards them to every
// subscriber of the topic: those that had the message already get it again
// (a zpeer Subscriber drops such a duplicate by its envelope ID).
//
// The cache holds at most max topics; publishing on a new topic beyond that
// forgets the topic published least recently. Cached messages that find a
// subscriber's queue full are dropped and counted (Dropped), as PUB drops.
// A queue counts a batch until its writer has finished writing it, so a
// subscription that arrives right after a burst as large as the send
// high-water mark can find it full though the peer has read the burst.
type LastValueCache struct {
	s   *Socket
	max int

	mu     sync.Mutex
	topics map[string]*list.Element // guarded by mu: *lvcEntry, most recent at the back
	lru    list.List                // guarded by mu

	replayed, dropped atomic.Uint64
}

type lvcEntry struct {
	topic  string
	frames [][]byte // the message's frames, copied (their backing arrays reused)
}

// NewLastValueCache makes a cache of at most max topics over s, an XPUB
// socket with WithXPubManual. Run Serve for subscriptions to take effect.
func NewLastValueCache(s *Socket, max int) (*LastValueCache, error) {
	r, ok := s.proto.(*xpubProto)
	if !ok || !r.o.Manual {
		return nil, fmt.Errorf("%w: a last-value cache needs an XPUB socket with WithXPubManual", ErrState)
	}
	if max < 1 {
		return nil, fmt.Errorf("socket: last-value cache of %d topics: must be at least 1", max)
	}
	return &LastValueCache{s: s, max: max, topics: make(map[string]*list.Element)}, nil
}

// Send publishes m on the socket (see Socket.Send) and caches it as the
// last message of its topic.
func (c *LastValueCache) Send(ctx context.Context, m Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.s.Send(ctx, m); err != nil {
		return err
	}
	topic := m.Frames[0]
	var e *lvcEntry
	if el := c.topics[string(topic)]; el != nil {
		c.lru.MoveToBack(el)
		e = el.Value.(*lvcEntry)
	} else {
		if c.lru.Len() >= c.max {
			old := c.lru.Front()
			c.lru.Remove(old)
			delete(c.topics, old.Value.(*lvcEntry).topic)
		}
		e = &lvcEntry{topic: string(topic)}
		c.topics[e.topic] = c.lru.PushBack(e)
	}
	if cap(e.frames) < len(m.Frames) {
		e.frames = make([][]byte, len(m.Frames))
	}
	e.frames = e.frames[:len(m.Frames)]
	for i, f := range m.Frames {
		if len(f) >= CopyThreshold || len(e.frames[i]) >= CopyThreshold {
			// Send references frames this large until written: a replay
			// still queued keeps the old one, so never write over it.
			e.frames[i] = append([]byte(nil), f...)
			continue
		}
		e.frames[i] = append(e.frames[i][:0], f...)
	}
	return nil
}

// Topics returns the number of topics cached.
func (c *LastValueCache) Topics() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Replayed returns the number of cached messages sent to subscribers.
func (c *LastValueCache) Replayed() uint64 { return c.replayed.Load() }

// Dropped returns the number of cached messages that found a subscriber's
// queue full.
func (c *LastValueCache) Dropped() uint64 { return c.dropped.Load() }

// Serve takes the subscription messages from the socket until ctx ends or
// the socket closes (it then returns nil): for a subscribe, it sends the
// subscriber the cached messages whose topics the prefix matches, oldest
// first, then subscribes it; for a cancel, it unsubscribes it. Other
// messages from subscribers are dropped.
func (c *LastValueCache) Serve(ctx context.Context) error {
	for {
		m, p, err := c.s.RecvFrom(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		prefix, on, ok := subscription(m)
		if !ok || p == nil {
			continue
		}
		if !on {
			c.s.UnsubscribePeer(p, string(prefix))
			continue
		}
		c.mu.Lock()
		for el := c.lru.Front(); el != nil; el = el.Next() {
			e := el.Value.(*lvcEntry)
			if !strings.HasPrefix(e.topic, string(prefix)) {
				continue
			}
			if err := c.s.SendTo(doneCtx, p, Msg{Frames: e.frames}); err != nil {
				c.dropped.Add(1)
			} else {
				c.replayed.Add(1)
			}
		}
		c.s.SubscribePeer(p, string(prefix))
		c.mu.Unlock()
	}
}
