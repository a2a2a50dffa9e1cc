package discovery

import (
	"context"
	"fmt"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
)

// Watcher reports the peers of one service as events: PeerUp, PeerUpdated
// and PeerDown. Its sources are mDNS (unless WithoutMDNS), static peers
// (WithStatic) and DNS SRV names (WithSRV); all feed the same events.
//
// mDNS liveness follows RFC 6762's caches: a peer's records live for their
// TTL (at most the expiry, WithExpiry) from the last answer that carried
// them; the Watcher queries again when they near their end (at 80-95 % of
// it), hears goodbyes (TTL 0) and announcements at once, and reports a
// peer down when its records run out. Its queries list the answers it
// already holds and stand back when another host just asked the same, so
// a link where every host watches carries about one query round per
// refresh period (WithRefresh) plus one answer per peer per half-lifetime.
// The socket layer adds what it knows through Touch and
// ReportUnreachable. Its mDNS traffic goes through the process's shared
// sockets (one per interface, see StackStats).
//
// Announcements carrying the Watcher's own node id are ignored. Each Watcher
// draws its own unless WithNodeID sets it, so by default it sees every
// announcement, its own process's included.
type Watcher struct {
	o       options
	service string
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sources []source
	stats   counters
	warn    *warner

	// The peer table and the subscribers, guarded by mu.
	mu     sync.Mutex
	closed bool
	peers  map[string]*peerState
	tombs  map[string]tomb
	subs   map[*subscription]struct{}
	events *subscription

	closeOnce sync.Once
}

// source feeds a Watcher.
type source interface {
	// run feeds the watcher until ctx is done.
	run(ctx context.Context)
	// refresh asks for a fresh look now; it does not block. full asks for
	// a fresh browse (Refresh); otherwise it is a check on suspects
	// (ReportUnreachable).
	refresh(full bool)
}

type peerState struct {
	p          Peer
	src        string        // the source that owns the peer
	rev        uint64        // announcement revision (mDNS)
	sig        string        // what the announcement said, to detect changes
	expires    bool          // mDNS peers expire; static and SRV peers are listed
	life       time.Duration // an mDNS peer is down when not seen for this long
	immune     bool          // static peers ignore ReportUnreachable
	lastSeen   time.Time
	suspect    time.Time // down at this time unless confirmed; zero: not suspect
	reportedAt time.Time // when ReportUnreachable was last called
	requeried  bool      // the second query of a suspicion was sent
}

// confirmGrace: after ReportUnreachable, only sightings read at least this
// long after the report confirm the peer. A packet the peer sent before it
// died may still wait in a socket buffer when the report comes; a fresh
// answer cannot come sooner, as responders wait 20 ms or more before
// answering a query (RFC 6762 section 6; answerDelay here).
const confirmGrace = 10 * time.Millisecond

// tomb keeps a peer that said goodbye from being revived by an answer
// that was sent before the goodbye but handled after it.
type tomb struct {
	until time.Time
	rev   uint64
}

const tombstone = time.Second

// NewWatcher starts watching the application service name service (see
// ServiceType; it may be empty when WithoutMDNS is given).
//
// Options: WithLoopback or WithInterfaces, WithRefresh, WithExpiry,
// WithUnreachableTimeout, WithNodeID, WithoutMDNS, WithStatic, WithSRV,
// WithDNSServer.
func NewWatcher(service string, opts ...Option) (*Watcher, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	w := newWatcher(o)
	if service != "" || !o.noMDNS {
		if w.service, err = serviceName(service); err != nil {
			return nil, err
		}
	}
	if len(o.static) > 0 {
		w.sources = append(w.sources, &staticSource{w: w, peers: o.static})
	}
	for _, spec := range o.srv {
		s, err := newSRVSource(w, spec)
		if err != nil {
			return nil, err
		}
		w.sources = append(w.sources, s)
	}
	if !o.noMDNS {
		s, err := newMDNSSource(w)
		if err != nil {
			return nil, err
		}
		w.sources = append(w.sources, s)
	}
	if len(w.sources) == 0 {
		return nil, fmt.Errorf("%w: WithoutMDNS and no static or SRV peers: nothing to watch", ErrOption)
	}
	w.start()
	return w, nil
}

func newWatcher(o options) *Watcher {
	return &Watcher{
		o:     o,
		peers: make(map[string]*peerState),
		tombs: make(map[string]tomb),
		subs:  make(map[*subscription]struct{}),
		warn:  newWarner(o.logger),
	}
}

// start runs the janitor and the sources.
func (w *Watcher) start() {
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(1 + len(w.sources))
	go w.janitor()
	for _, s := range w.sources {
		go func() {
			defer w.wg.Done()
			s.run(w.ctx)
		}()
	}
	if l := eventlog.New(w.o.logger); l.Enabled(slog.LevelInfo) {
		// Peer events are logged from a subscription of their own, off the
		// Watcher's lock and I/O goroutines.
		ch := w.subscribe(w.ctx).ch
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for ev := range ch {
				p := ev.Peer
				switch ev.Kind {
				case PeerUp:
					l.Log(slog.LevelInfo, eventlog.PeerUp, "service", p.Service, "instance", p.Instance, "node", p.Node, "endpoints", p.Endpoints)
				case PeerDown:
					l.Log(slog.LevelInfo, eventlog.PeerDown, "service", p.Service, "instance", p.Instance, "reason", ev.Reason)
				}
			}
		}()
	}
}

// Stats returns the Watcher's counters: PacketsIn (mDNS responses, and
// queries for its service, handed to it), PacketsOut (query packets),
// SendErrors, QueueDrops (packets dropped while its queue was full),
// EventsCoalesced, EventDrops, PeersUp, PeersDown and PeersIgnored.
func (w *Watcher) Stats() Stats { return w.stats.stats() }

// NodeID returns the node id whose announcements this Watcher ignores.
func (w *Watcher) NodeID() string { return w.o.node }

// Events returns the Watcher's event channel. The first call subscribes:
// it delivers PeerUp for every peer already known, then every event as it
// happens; later calls return the same channel. The channel is closed by
// Close.
//
// Events wait in a bounded queue until read, coalesced per peer: a peer
// that came up and changed before the reader looked is one PeerUp with
// its latest state, one that came and went is nothing, one that went down
// and came back is PeerDown then PeerUp (see Stats.EventsCoalesced). So a
// slow reader still ends with the Watcher's peers, and every peer it saw
// up it sees go down. The queue holds at most MaxQueuedEvents; beyond,
// events are dropped, counted and logged.
func (w *Watcher) Events() <-chan Event {
	w.mu.Lock()
	s := w.events
	w.mu.Unlock()
	if s != nil {
		return s.ch
	}
	s = w.subscribe(context.Background())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.events == nil {
		w.events = s
		return s.ch
	}
	s.cancel()
	return w.events.ch
}

// Subscribe returns a new event channel, independent of Events and of
// other subscriptions: PeerUp for every peer already known, then every
// event as it happens. It is closed when ctx is done or the Watcher is
// closed. AutoConnect uses one.
func (w *Watcher) Subscribe(ctx context.Context) <-chan Event {
	return w.subscribe(ctx).ch
}

// Peers returns the peers that are up, sorted by Key.
func (w *Watcher) Peers() []Peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Peer, 0, len(w.peers))
	for _, st := range w.peers {
		out = append(out, st.p.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Refresh starts a fresh mDNS browse and DNS SRV lookup now, without
// waiting for the refresh period. The browse's first query lists no known
// answers, so every peer answers it, and its next queries follow at 1 s,
// 2 s, 4 s ... as at start.
func (w *Watcher) Refresh() { w.refresh(true) }

func (w *Watcher) refresh(full bool) {
	for _, s := range w.sources {
		s.refresh(full)
	}
}

// suspects returns the keys of the peers reported unreachable and not yet
// confirmed: queries do not list their records as known, so that they
// answer if they can.
func (w *Watcher) suspects() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool)
	for k, st := range w.peers {
		if !st.suspect.IsZero() {
			out[k] = true
		}
	}
	return out
}

// Touch tells the Watcher that the socket layer heard from the peer at
// endpoint (a message or a heartbeat; endpoint as given to
// Connector.Connect): the peer counts as seen now, which postpones its
// expiry and cancels a pending ReportUnreachable.
func (w *Watcher) Touch(endpoint string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range w.peers {
		if slices.Contains(st.p.Endpoints, endpoint) {
			if now.After(st.lastSeen) {
				st.lastSeen = now
			}
			st.suspect = time.Time{}
		}
	}
}

// ReportUnreachable tells the Watcher that the socket layer lost its
// connection to endpoint (as given to Connector.Connect) or missed its
// heartbeats. The Watcher queries over mDNS (listing the peer's records
// as unknown, so that it answers if it can) and looks DNS SRV names up at
// once, and again halfway through the unreachable timeout
// (WithUnreachableTimeout, default 1 s); unless a source confirms the peer
// within it, the peer is reported down with ReasonUnreachable. Answers
// read within 10 ms of the report do not confirm: the peer may have sent
// them before it died. A peer that still answers mDNS stays up: the
// process is alive, and the socket layer keeps reconnecting. Static peers
// ignore it.
func (w *Watcher) ReportUnreachable(endpoint string) {
	now := time.Now()
	hit := false
	w.mu.Lock()
	for _, st := range w.peers {
		if st.immune || !slices.Contains(st.p.Endpoints, endpoint) {
			continue
		}
		st.reportedAt = now
		if st.suspect.IsZero() {
			st.suspect = now.Add(w.o.unreachable)
			st.requeried = false
		}
		hit = true
	}
	w.mu.Unlock()
	if hit {
		w.refresh(false)
	}
}

// Close stops the Watcher and closes its event channels. It does not
// report the known peers down. It is idempotent and returns nil.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.cancel()
		w.wg.Wait()
	})
	return nil
}

// janitor reports peers down when they expire or stay unreachable.
func (w *Watcher) janitor() {
	defer w.wg.Done()
	tick := min(w.o.expiry, w.o.unreachable) / 10
	tick = max(5*time.Millisecond, min(tick, time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	var l logged
	for {
		select {
		case <-w.ctx.Done():
			return
		case now := <-t.C:
			w.expire(now)
			w.warnDrops(&l)
		}
	}
}

func (w *Watcher) expire(now time.Time) {
	requery := false
	defer func() {
		if requery {
			w.refresh(false)
		}
	}()
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.peers))
	for k := range w.peers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		st := w.peers[k]
		switch {
		case st.expires && now.Sub(st.lastSeen) > st.life:
			w.downLocked(k, st, ReasonExpired, now)
		case !st.suspect.IsZero() && now.After(st.suspect):
			w.downLocked(k, st, ReasonUnreachable, now)
		case !st.suspect.IsZero() && !st.requeried && now.After(st.suspect.Add(-w.o.unreachable/2)):
			// Halfway: ask again, in case a query or its answer was lost.
			st.requeried = true
			requery = true
		}
	}
	for k, t := range w.tombs {
		if now.After(t.until) {
			delete(w.tombs, k)
		}
	}
}

func (w *Watcher) downLocked(key string, st *peerState, reason string, now time.Time) {
	delete(w.peers, key)
	w.emitLocked(Event{Kind: PeerDown, Peer: st.p, Reason: reason, Time: now, LastSeen: st.lastSeen})
}

// self reports whether a node id is the Watcher's own.
func (w *Watcher) self(node string) bool { return node != "" && node == w.o.node }

// seen records an mDNS sighting of p at revision rev. sig summarises what
// the announcement said; a different sig at the same or a newer revision
// is reported as PeerUpdated. Older revisions only count as liveness.
func (w *Watcher) seen(src string, p Peer, rev uint64, sig string, at time.Time) {
	w.seenFor(src, p, rev, sig, at, w.o.expiry)
}

// seenFor is seen for records that live for life (their TTL, at most the
// expiry): the peer is down unless seen again within life.
func (w *Watcher) seenFor(src string, p Peer, rev uint64, sig string, at time.Time, life time.Duration) {
	if w.self(p.Node) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if t, ok := w.tombs[p.Key]; ok && at.Before(t.until) && rev <= t.rev {
		return
	}
	st := w.peers[p.Key]
	if st == nil {
		if len(w.peers) >= MaxPeers {
			w.ignore(p.Key)
			return
		}
		w.peers[p.Key] = &peerState{p: p, src: src, rev: rev, sig: sig, expires: true, life: life, lastSeen: at}
		w.emitLocked(Event{Kind: PeerUp, Peer: p, Time: at, LastSeen: at})
		return
	}
	if st.expires {
		st.life = life
	}
	w.confirmLocked(st, at)
	if rev < st.rev || st.src != src {
		return
	}
	st.rev = rev
	if sig != st.sig {
		st.sig = sig
		st.p = p
		w.emitLocked(Event{Kind: PeerUpdated, Peer: p, Time: at, LastSeen: at})
	}
}

// confirmLocked counts a sighting at time at as proof of life.
func (w *Watcher) confirmLocked(st *peerState, at time.Time) {
	if at.After(st.lastSeen) {
		st.lastSeen = at
	}
	if !st.suspect.IsZero() && !at.Before(st.reportedAt.Add(confirmGrace)) {
		st.suspect = time.Time{}
	}
}

// ignore counts a new peer ignored because MaxPeers are tracked (the
// janitor logs it).
func (w *Watcher) ignore(string) { w.stats.peersIgnored.Add(1) }

// logged is what the janitor last logged of the drop counters.
type logged struct{ packets, events, peers uint64 }

// warnDrops logs, at warning level, what was dropped since the last line
// (at most one line per second per kind). The janitor calls it: drops are
// counted on the stack's reader and under w.mu, where no log handler
// should run.
func (w *Watcher) warnDrops(l *logged) {
	w.warn.warnGrowth(&w.stats.queueDrops, &l.packets, "discovery: watcher dropped mDNS packets (queue full)",
		"dropped", "service", w.service, "queue", inboxSize)
	w.warn.warnGrowth(&w.stats.eventDrops, &l.events, "discovery: watcher dropped events (subscriber queue full)",
		"dropped", "service", w.service, "max", MaxQueuedEvents)
	w.warn.warnGrowth(&w.stats.peersIgnored, &l.peers, "discovery: watcher ignores new peers (MaxPeers tracked)",
		"ignored", "service", w.service, "max", MaxPeers)
}

// aliveFor records that the peer with key answered, without new data, in
// records that live for life.
func (w *Watcher) aliveFor(key string, at time.Time, life time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if st := w.peers[key]; st != nil {
		if st.expires {
			st.life = life
		}
		w.confirmLocked(st, at)
	}
}

// gone handles a goodbye for key at revision rev.
func (w *Watcher) gone(key string, rev uint64, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	st := w.peers[key]
	if st != nil && rev < st.rev {
		return // a goodbye for a revision already replaced
	}
	if t := w.tombs[key]; rev < t.rev {
		rev = t.rev
	}
	w.tombs[key] = tomb{until: at.Add(tombstone), rev: rev}
	if st != nil {
		w.downLocked(key, st, ReasonGoodbye, at)
	}
}

// replace sets the complete list of peers of a listing source (static,
// SRV): new peers are up, changed ones updated, missing ones down.
func (w *Watcher) replace(src string, peers []Peer, immune bool, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	keep := make(map[string]bool, len(peers))
	for _, p := range peers {
		if w.self(p.Node) {
			continue
		}
		keep[p.Key] = true
		st := w.peers[p.Key]
		if st == nil {
			if len(w.peers) >= MaxPeers {
				w.ignore(p.Key)
				continue
			}
			w.peers[p.Key] = &peerState{p: p, src: src, immune: immune, lastSeen: at}
			w.emitLocked(Event{Kind: PeerUp, Peer: p, Time: at, LastSeen: at})
			continue
		}
		if st.src != src {
			continue
		}
		w.confirmLocked(st, at)
		if !st.p.same(p) {
			st.p = p
			w.emitLocked(Event{Kind: PeerUpdated, Peer: p, Time: at, LastSeen: at})
		}
	}
	keys := make([]string, 0)
	for k, st := range w.peers {
		if st.src == src && !keep[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.downLocked(k, w.peers[k], ReasonRemoved, at)
	}
}

// subscription is one event stream: a bounded, coalescing queue filled
// under w.mu and a goroutine that hands events to the reader, so that no
// source ever blocks on a slow reader.
type subscription struct {
	ch     chan Event
	queue  evQueue // guarded by w.mu
	wake   chan struct{}
	cancel context.CancelFunc
}

func (w *Watcher) subscribe(ctx context.Context) *subscription {
	ctx, cancel := context.WithCancel(ctx)
	s := &subscription{ch: make(chan Event), wake: make(chan struct{}, 1), cancel: cancel}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		cancel()
		close(s.ch)
		return s
	}
	keys := make([]string, 0, len(w.peers))
	for k := range w.peers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	now := time.Now()
	for _, k := range keys {
		s.queue.push(Event{Kind: PeerUp, Peer: w.peers[k].p.clone(), Time: now, LastSeen: w.peers[k].lastSeen})
	}
	w.subs[s] = struct{}{}
	w.wg.Add(1)
	go w.deliver(ctx, s)
	return s
}

func (w *Watcher) deliver(ctx context.Context, s *subscription) {
	defer w.wg.Done()
	defer close(s.ch)
	defer func() {
		w.mu.Lock()
		delete(w.subs, s)
		w.mu.Unlock()
		s.cancel()
	}()
	for {
		w.mu.Lock()
		ev, ok := s.queue.pop()
		w.mu.Unlock()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-w.ctx.Done():
				return
			}
		}
		select {
		case s.ch <- ev:
		case <-ctx.Done():
			return
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *Watcher) emitLocked(ev Event) {
	switch ev.Kind {
	case PeerUp:
		w.stats.peersUp.Add(1)
	case PeerDown:
		w.stats.peersDown.Add(1)
	}
	for s := range w.subs {
		e := ev
		e.Peer = ev.Peer.clone()
		coalesced, dropped := s.queue.push(e)
		if coalesced {
			w.stats.coalesced.Add(1)
		}
		if dropped {
			w.stats.eventDrops.Add(1) // the janitor logs it
			continue
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}
