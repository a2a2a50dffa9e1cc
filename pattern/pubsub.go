package pattern

import (
	"context"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// Publisher publishes typed values on topics to every Subscriber whose
// subscription is a prefix of the topic. It is a PUB socket: each message is
// two frames, [topic, envelope], so any ZeroMQ SUB can filter it by topic.
//
// Publish never blocks: a subscriber whose queue is full (WithSocketOptions
// with socket.WithSendHWM sets its size, 1000 messages by default) misses the
// message, and the drop is counted in Stats.Dropped and per subscriber in
// Stats.Peers. Each topic has its own sequence number, 1, 2, 3, ..., so a
// subscriber can tell exactly what it missed.
//
// A subscription reaches the Publisher a moment after the subscriber
// connects, and what is published before it arrives is not sent to that
// subscriber (ZeroMQ's slow joiner): WaitSubscribers waits for it.
//
// With WithLastValue it is an XPUB socket with a last-value cache
// (socket.LastValueCache): a subscriber that joins first gets the last
// message of every topic it subscribes to, then the live stream.
type Publisher[T any] struct {
	o    options
	sock *socket.Socket
	c    counters
	lvc  *socket.LastValueCache
	// served is closed when the cache's Serve goroutine ends (after Close).
	served chan struct{}

	mu     sync.Mutex             // serialises sequence numbering and sending, so seqs go out in order
	topics map[string]*topicState // guarded by mu
	closed bool                   // guarded by mu
	disc   *joined
}

type topicState struct {
	seq   uint64
	frame []byte          // the topic as a frame; shared by every message, never modified
	tmpl  *codec.Template // the envelope of a Publish without CallOptions
}

// NewPublisher creates a Publisher.
//
// Options: WithBind, WithConnect, WithPriority, WithType, WithName,
// WithSocketOptions, WithLogger, WithService, WithWatcher, WithDiscovery.
func NewPublisher[T any](opts ...Option) (*Publisher[T], error) {
	o, err := buildOptions("Publisher", oPriority|oType|oLastValue, opts)
	if err != nil {
		return nil, err
	}
	typ, own := socket.PUB, []socket.Option(nil)
	if o.lastValue > 0 {
		typ, own = socket.XPUB, []socket.Option{socket.WithXPubManual()}
	}
	s, err := newSocket(typ, &o, nil, own...)
	if err != nil {
		return nil, err
	}
	p := &Publisher[T]{o: o, sock: s, topics: make(map[string]*topicState)}
	if o.lastValue > 0 {
		if p.lvc, err = socket.NewLastValueCache(s, o.lastValue); err != nil {
			s.Close()
			return nil, err
		}
		p.served = make(chan struct{})
		go func() {
			defer close(p.served)
			p.lvc.Serve(context.Background()) // until the socket closes
		}()
	}
	if err := setup(s, o); err != nil {
		p.closeSocket()
		return nil, err
	}
	if p.disc, err = join(&p.o, typ.String(), p, p.Endpoints()); err != nil {
		p.closeSocket()
		return nil, err
	}
	return p, nil
}

// WithLastValue gives a Publisher a last-value cache of up to topics
// topics: it keeps the last message published on each, and a subscriber
// that joins gets the current message of every topic it subscribes to
// before the live stream, with its original sequence number (so no gap is
// counted). Publishing on a new topic beyond the bound forgets the topic
// published least recently. The Publisher is then an XPUB socket (any SUB
// still talks to it) that handles subscriptions itself.
//
// The cached messages are sent as published messages are: one that finds
// the subscriber's queue full (socket.WithSendHWM) is dropped and counted. A
// queue counts a batch until its writer has finished writing it, so a
// subscriber that joins right after a burst as large as the mark can miss
// cached messages while the burst is still being written: a publisher
// whose bursts reach the mark wants a larger one.
func WithLastValue(topics int) Option {
	return func(o *options) error {
		if topics < 1 {
			return optErr("WithLastValue(%d): the cache needs room for at least one topic", topics)
		}
		o.used |= oLastValue
		o.lastValue = topics
		return nil
	}
}

// closeSocket closes the socket and waits for the cache's goroutine.
func (p *Publisher[T]) closeSocket() error {
	err := p.sock.Close()
	if p.served != nil {
		<-p.served
	}
	return err
}

// Publish sends v on topic to every subscriber of a matching prefix. It
// does not block on slow or absent subscribers; ctx is only checked for
// cancellation. It fails with ErrClosed after Close.
func (p *Publisher[T]) Publish(ctx context.Context, topic string, v T, opts ...CallOption) (err error) {
	if err := ctx.Err(); err != nil {
		return ctxError(ctx)
	}
	id := codec.NewID()
	if p.o.tracer != nil {
		var end func(error)
		ctx, opts, end = p.o.startSend(ctx, "publisher", topic, id, opts)
		defer func() { end(err) }()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	st, err := p.topic(topic)
	if err != nil {
		return err
	}
	frame, mem, prio, err := encodeMsg(&p.o, st.tmpl, codec.KindData, topic, id, st.seq+1, v, opts)
	if err != nil {
		return err
	}
	defer mem.release()
	m := socket.Msg{Frames: [][]byte{st.frame, frame}, Priority: prio, Buf: mem.sb}
	if p.lvc != nil {
		err = p.lvc.Send(ctx, m)
	} else {
		err = p.sock.Send(ctx, m)
	}
	if err != nil {
		return callError(err)
	}
	st.seq++
	p.c.sent.Add(1)
	return nil
}

// topic returns the state of topic, creating it on first use. The caller
// holds p.mu.
func (p *Publisher[T]) topic(topic string) (*topicState, error) {
	if st := p.topics[topic]; st != nil {
		return st, nil
	}
	tmpl, err := newTemplate(&p.o, codec.KindData, topic)
	if err != nil {
		return nil, err
	}
	st := &topicState{frame: []byte(topic), tmpl: tmpl}
	p.topics[topic] = st
	return st, nil
}

// Connect connects the Publisher's socket to ep (for a publisher that dials
// its subscribers).
func (p *Publisher[T]) Connect(ep string) error { return p.sock.Connect(ep) }

// Disconnect undoes Connect.
func (p *Publisher[T]) Disconnect(ep string) error { return p.sock.Disconnect(ep) }

// Endpoints returns the bound endpoints, with real port numbers.
func (p *Publisher[T]) Endpoints() []string { return p.sock.Endpoints() }

// Subscribers returns the number of connected subscribers whose
// subscriptions have reached the Publisher: a message published now goes to
// each of them whose prefixes match. (A subscriber that has connected but
// whose subscriptions are still in flight is not counted; a message
// published before they arrive would not be sent to it.)
func (p *Publisher[T]) Subscribers() int {
	n := 0
	for _, ps := range p.sock.Stats().PerPeer {
		if ps.Subscriptions > 0 {
			n++
		}
	}
	return n
}

// WaitSubscribers blocks until at least n subscribers are connected and
// their subscriptions have reached the Publisher (see Subscribers), so that
// what is published next goes to each of them.
//
// This is ZeroMQ's slow-joiner rule: a subscription travels from the
// subscriber to the publisher after the connection is made, and a message
// published before it arrives is not sent to that subscriber (nothing is
// queued for it or replayed). A program that publishes as soon as it starts
// waits here first, with a deadline in ctx. It fails with ctx's error (a
// deadline matches ErrTimeout) or ErrClosed.
func (p *Publisher[T]) WaitSubscribers(ctx context.Context, n int) error {
	for {
		changed := p.sock.SubscriptionsChanged() // before the look: no change is missed
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if p.Subscribers() >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctxError(ctx)
		}
	}
}

// Stats returns the Publisher's counters: Sent (messages published),
// Dropped (copies not queued for a full subscriber, once per subscriber) and
// per connected subscriber in Peers: queued, dropped and their ratio.
func (p *Publisher[T]) Stats() Stats {
	var s Stats
	p.c.fill(&s)
	st := p.sock.Stats()
	addSocket(&s.Socket, st)
	s.Dropped = st.Drops
	for _, ps := range st.PerPeer {
		s.Peers = append(s.Peers, PeerStats{Remote: ps.Remote, Sent: ps.MsgsOut, Dropped: ps.Drops,
			Reliability: ratio(ps.MsgsOut, ps.Drops)})
	}
	return s
}

// Close closes the Publisher, giving queued messages the socket's linger
// time to be written. Close is idempotent.
func (p *Publisher[T]) Close() error {
	p.mu.Lock()
	closed := p.closed
	p.closed = true
	p.mu.Unlock()
	if !closed {
		p.disc.leave()
	}
	return p.closeSocket()
}

// Subscriber receives typed values published on the topics it subscribed
// to. It is a SUB socket; messages from any ZeroMQ PUB that sends [topic,
// envelope] are accepted.
//
// It tracks each publisher's per-topic sequence numbers (publishers are told
// apart by their envelope Sender, see WithName). A hole in them is a gap:
// the messages in it were dropped on the way, most often by the publisher
// because this subscriber fell behind. Gaps are counted in Stats.Gaps and
// per publisher in Stats.Sources, and reported to the WithOnGap callback.
//
// A subscriber that joins late, or subscribes to a topic late, starts from
// the next message published: nothing is replayed, and what was published
// before is not counted as missed. The first message seen from a publisher
// on a topic sets the baseline. A sequence number that goes backwards (the
// publisher restarted under the same name) sets a new baseline.
type Subscriber[T any] struct {
	o    options
	sock *socket.Socket
	c    counters
	recv chan struct{} // semaphore: one receiver at a time keeps sequence checks in order

	mu      sync.Mutex
	sources map[string]*source // guarded by mu: by sender
	typ     string             // the last message's Type, reused while it repeats (under recv)
	disc    *joined
	once    sync.Once
}

// source is what a Subscriber knows of one publisher. Its strings are
// reused for every message from it, so receiving allocates no strings.
type source struct {
	stats  SourceStats
	topics map[string]*stream
}

// stream is one publisher's topic: the last sequence number seen, and the
// ID of the message that had it.
type stream struct {
	topic  string
	last   uint64
	lastID codec.ID
}

// NewSubscriber creates a Subscriber. Give it topics with WithTopics or
// Subscribe: with none it receives nothing, as a ZeroMQ SUB socket (the
// zpeer sub command, by contrast, subscribes to everything when given no
// --topic; see docs/patterns.md, "Topics").
//
// Options: WithConnect, WithBind, WithTopics, WithOnGap, WithName,
// WithSocketOptions, WithLogger, WithService, WithWatcher, WithDiscovery.
func NewSubscriber[T any](opts ...Option) (*Subscriber[T], error) {
	o, err := buildOptions("Subscriber", oTopics|oOnGap, opts)
	if err != nil {
		return nil, err
	}
	s, err := newSocket(socket.SUB, &o, nil)
	if err != nil {
		return nil, err
	}
	sub := &Subscriber[T]{o: o, sock: s, recv: make(chan struct{}, 1), sources: make(map[string]*source)}
	for _, t := range o.topics {
		if err := s.Subscribe(t); err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := setup(s, o); err != nil {
		s.Close()
		return nil, err
	}
	if sub.disc, err = join(&sub.o, "SUB", sub, sub.Endpoints()); err != nil {
		s.Close()
		return nil, err
	}
	return sub, nil
}

// Subscribe adds a topic prefix ("" is every topic).
func (s *Subscriber[T]) Subscribe(prefix string) error { return s.sock.Subscribe(prefix) }

// Unsubscribe removes a prefix added by Subscribe or WithTopics.
func (s *Subscriber[T]) Unsubscribe(prefix string) error { return s.sock.Unsubscribe(prefix) }

// Connect connects to a publisher at ep.
func (s *Subscriber[T]) Connect(ep string) error { return s.sock.Connect(ep) }

// Disconnect undoes Connect.
func (s *Subscriber[T]) Disconnect(ep string) error { return s.sock.Disconnect(ep) }

// Endpoints returns the bound endpoints, with real port numbers.
func (s *Subscriber[T]) Endpoints() []string { return s.sock.Endpoints() }

// Publishers returns the number of connected publishers.
func (s *Subscriber[T]) Publishers() int { return s.sock.Peers() }

// Recv returns the next message. Messages that do not decode (not [topic,
// envelope], or a body that is not a T) are skipped and counted in
// Stats.Dropped. Recv may be called from several goroutines; messages are
// taken one at a time, in arrival order. It fails with ctx's error (a
// deadline matches ErrTimeout) or, once the Subscriber is closed and what it
// had received is consumed, ErrClosed.
func (s *Subscriber[T]) Recv(ctx context.Context) (Message[T], error) {
	for {
		m, sm, body, gap, err := s.next(ctx)
		if err != nil {
			return Message[T]{}, err
		}
		if gap.Missed > 0 {
			s.o.elog.Log(slog.LevelWarn, eventlog.Gap, "sender", gap.Sender, "topic", gap.Topic, "from", gap.From, "to", gap.To, "missed", gap.Missed)
			if s.o.onGap != nil {
				s.o.onGap(gap)
			}
		}
		var kept bool
		m.Value, kept, err = takeBody[T](body)
		if err == nil {
			logUnknownKeys[T](&s.o, body)
		}
		if kept {
			sm.TakeFrame(len(sm.Frames) - 1) // the value is (a part of) the received frame
		} else {
			sm.Free() // the value, like the rest of m, is a copy
		}
		if err != nil {
			s.c.dropped.Add(1)
			s.o.logger.Debug("pattern: subscriber dropped a message", "err", err)
			continue
		}
		s.c.delivered.Add(1)
		return m, nil
	}
}

// next takes one envelope off the socket, checks its sequence number and
// returns its metadata, the socket message and the body in it.
func (s *Subscriber[T]) next(ctx context.Context) (Message[T], socket.Msg, []byte, Gap, error) {
	select {
	case s.recv <- struct{}{}:
	default:
		select {
		case s.recv <- struct{}{}:
		case <-ctx.Done():
			return Message[T]{}, socket.Msg{}, nil, Gap{}, ctxError(ctx)
		}
	}
	defer func() { <-s.recv }()
	for {
		m, err := s.sock.Recv(ctx)
		if err != nil {
			return Message[T]{}, socket.Msg{}, nil, Gap{}, callError(err)
		}
		var env codec.View
		if len(m.Frames) != 2 || codec.DecodeView(m.Frames[1], &env) != nil || env.Kind != codec.KindData {
			s.c.dropped.Add(1)
			m.Free()
			continue
		}
		if len(env.Topic) == 0 {
			env.Topic = m.Frames[0]
		}
		if string(env.Type) != s.typ {
			s.typ = string(env.Type)
		}
		msg := Message[T]{ID: env.ID, Type: s.typ, Priority: env.Priority, Seq: env.Seq,
			Timestamp: time.Unix(0, env.Timestamp), Headers: env.Headers()}
		gap, dup := s.track(&env, &msg)
		if dup {
			s.c.dups.Add(1)
			m.Free()
			continue
		}
		return msg, m, env.Body, gap, nil
	}
}

// track updates the sequence state of env's stream, fills in msg's sender
// and topic, and returns the gap env reveals, if any. dup reports the
// message just before it again (the same sequence number and ID: a
// last-value cache's copy, forwarded by a proxy to a subscriber that had the
// original), which the caller drops.
func (s *Subscriber[T]) track(env *codec.View, msg *Message[T]) (gap Gap, dup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.sources[string(env.Sender)]
	if src == nil {
		src = &source{stats: SourceStats{Sender: string(env.Sender)}, topics: make(map[string]*stream)}
		s.sources[src.stats.Sender] = src
	}
	src.stats.Delivered++
	msg.Sender = src.stats.Sender
	st := src.topics[string(env.Topic)]
	seen := st != nil
	if !seen {
		st = &stream{topic: string(env.Topic)}
		src.topics[st.topic] = st
	}
	msg.Topic = st.topic
	if seen && env.Seq == st.last && env.ID == st.lastID {
		src.stats.Delivered--
		return Gap{}, true
	}
	last := st.last
	st.last, st.lastID = env.Seq, env.ID
	if !seen || env.Seq <= last || env.Seq == 0 {
		return Gap{}, false
	}
	missed := env.Seq - last - 1
	if missed == 0 {
		return Gap{}, false
	}
	src.stats.Gaps += missed
	s.c.gaps.Add(missed)
	return Gap{Sender: msg.Sender, Topic: msg.Topic, From: last + 1, To: env.Seq - 1, Missed: missed}, false
}

// Stats returns the Subscriber's counters: Delivered (messages returned by
// Recv), Gaps (messages known missed), Dropped (undecodable messages) and
// per publisher in Sources: delivered, missed and reliability (delivered /
// sent).
func (s *Subscriber[T]) Stats() Stats {
	var st Stats
	s.c.fill(&st)
	addSocket(&st.Socket, s.sock.Stats())
	s.mu.Lock()
	for _, src := range s.sources {
		ss := src.stats
		ss.Reliability = ratio(ss.Delivered, ss.Gaps)
		st.Sources = append(st.Sources, ss)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Sources, func(a, b SourceStats) int {
		switch {
		case a.Sender < b.Sender:
			return -1
		case a.Sender > b.Sender:
			return 1
		}
		return 0
	})
	return st
}

// Close closes the Subscriber. Blocked Recv calls return ErrClosed once the
// messages already received are consumed. Close is idempotent.
func (s *Subscriber[T]) Close() error {
	s.once.Do(s.disc.leave)
	return s.sock.Close()
}
