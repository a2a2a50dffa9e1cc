package metrics

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// Role names a pattern role; it is the value of the role label.
type Role string

// The pattern roles.
const (
	RoleRequester  Role = "requester"
	RoleReplier    Role = "replier"
	RolePublisher  Role = "publisher"
	RoleSubscriber Role = "subscriber"
	RolePusher     Role = "pusher"
	RolePuller     Role = "puller"
	// State roles (AddState).
	RoleStateServer Role = "state_server"
	RoleMirror      Role = "mirror"
)

var roles = []Role{RoleRequester, RoleReplier, RolePublisher, RoleSubscriber, RolePusher, RolePuller}

// StatsSource is a pattern role: every Requester, Replier, Publisher,
// Subscriber, Pusher and Puller has this method.
type StatsSource interface {
	Stats() pattern.Stats
}

// StateSource is a replicated-state role: a pattern.StateServer or a
// pattern.Mirror of any value type.
type StateSource interface {
	Stats() pattern.StateStats
}

// Errors.
var (
	// ErrDuplicate: a source of the same kind is already added under the
	// same labels (its series would collide).
	ErrDuplicate = errors.New("metrics: already added")
	// ErrInvalid: an argument the Collector cannot use (nil source, empty
	// or unknown role, empty name).
	ErrInvalid = errors.New("metrics: invalid argument")
)

// Option configures a Collector.
type Option func(*Collector) error

// WithPeerSeries adds per-peer series for sockets (messages and bytes each
// way, queued messages), labelled by the peer's remote address, for at
// most max peers per socket (the first max in address order; the rest are
// left out, and zpeer_socket_peers still counts them). Off by default: a
// peer label grows with the fleet.
func WithPeerSeries(max int) Option {
	return func(c *Collector) error {
		if max < 1 {
			return fmt.Errorf("%w: WithPeerSeries(%d): must be at least 1", ErrInvalid, max)
		}
		c.peerSeries = max
		return nil
	}
}

// Collector is a prometheus.Collector over zpeer's Stats. It reads every
// source's Stats at scrape time; its methods are safe for concurrent use,
// scrapes included. A source that is closed keeps reporting its last
// counters until it is removed.
type Collector struct {
	peerSeries int

	mu         sync.Mutex // guards the maps and stack
	sockets    map[string]*socket.Socket
	patterns   map[patternKey]StatsSource
	states     map[patternKey]StateSource
	announcers map[string]*discovery.Announcer
	watchers   map[string]*discovery.Watcher
	stack      bool
}

type patternKey struct {
	role Role
	name string
}

// NewCollector returns an empty Collector.
func NewCollector(opts ...Option) (*Collector, error) {
	c := &Collector{
		sockets:    make(map[string]*socket.Socket),
		patterns:   make(map[patternKey]StatsSource),
		states:     make(map[patternKey]StateSource),
		announcers: make(map[string]*discovery.Announcer),
		watchers:   make(map[string]*discovery.Watcher),
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddSocket exposes a socket's counters under the label socket=name.
func (c *Collector) AddSocket(name string, s *socket.Socket) error {
	if s == nil || name == "" {
		return fmt.Errorf("%w: AddSocket needs a name and a socket", ErrInvalid)
	}
	return add(c, c.sockets, name, s)
}

// AddPattern exposes a pattern role's counters under the labels role and
// name (the name is yours: a service, a queue, a topic family).
func (c *Collector) AddPattern(role Role, name string, p StatsSource) error {
	if p == nil || name == "" || !slices.Contains(roles, role) {
		return fmt.Errorf("%w: AddPattern(%q, %q): needs a known role, a name and a pattern", ErrInvalid, role, name)
	}
	return add(c, c.patterns, patternKey{role, name}, p)
}

// AddState exposes a StateServer's (role RoleStateServer) or a Mirror's
// (RoleMirror) figures under the labels role and name.
func (c *Collector) AddState(role Role, name string, st StateSource) error {
	if st == nil || name == "" || (role != RoleStateServer && role != RoleMirror) {
		return fmt.Errorf("%w: AddState(%q, %q): needs RoleStateServer or RoleMirror, a name and a source", ErrInvalid, role, name)
	}
	return add(c, c.states, patternKey{role, name}, st)
}

// AddAnnouncer exposes a discovery Announcer's counters under the labels
// component="announcer" and service=name.
func (c *Collector) AddAnnouncer(name string, a *discovery.Announcer) error {
	if a == nil || name == "" {
		return fmt.Errorf("%w: AddAnnouncer needs a name and an announcer", ErrInvalid)
	}
	return add(c, c.announcers, name, a)
}

// AddWatcher exposes a discovery Watcher's counters, and the number of
// peers it sees, under the labels component="watcher" and service=name.
func (c *Collector) AddWatcher(name string, w *discovery.Watcher) error {
	if w == nil || name == "" {
		return fmt.Errorf("%w: AddWatcher needs a name and a watcher", ErrInvalid)
	}
	return add(c, c.watchers, name, w)
}

// AddDiscoveryStack exposes the process's shared mDNS stack
// (discovery.StackStats) under component="stack".
func (c *Collector) AddDiscoveryStack() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stack {
		return fmt.Errorf("%w: the discovery stack", ErrDuplicate)
	}
	c.stack = true
	return nil
}

// Remove stops exposing every source added under name (of every kind and
// role). It reports whether there was one.
func (c *Collector) Remove(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.sockets) + len(c.patterns) + len(c.states) + len(c.announcers) + len(c.watchers)
	delete(c.sockets, name)
	delete(c.announcers, name)
	delete(c.watchers, name)
	for k := range c.patterns {
		if k.name == name {
			delete(c.patterns, k)
		}
	}
	for k := range c.states {
		if k.name == name {
			delete(c.states, k)
		}
	}
	return n != len(c.sockets)+len(c.patterns)+len(c.states)+len(c.announcers)+len(c.watchers)
}

func add[K comparable, V any](c *Collector, m map[K]V, k K, v V) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := m[k]; ok {
		return fmt.Errorf("%w: %v", ErrDuplicate, k)
	}
	m[k] = v
	return nil
}

// Describe sends the descriptors of every metric the Collector can export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads every source's Stats and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	// Take the sources under the lock, read their Stats outside it: a
	// Stats call takes the source's own locks.
	c.mu.Lock()
	socks := sortedMap(c.sockets)
	pats := make([]patternEntry, 0, len(c.patterns))
	for k, p := range c.patterns {
		pats = append(pats, patternEntry{k, p})
	}
	states := make([]stateEntry, 0, len(c.states))
	for k, st := range c.states {
		states = append(states, stateEntry{k, st})
	}
	anns := sortedMap(c.announcers)
	wats := sortedMap(c.watchers)
	stack := c.stack
	c.mu.Unlock()
	sort.Slice(pats, func(i, j int) bool { return pats[i].key.less(pats[j].key) })

	for _, s := range socks {
		c.collectSocket(ch, s.name, s.v)
	}
	for _, p := range pats {
		collectPattern(ch, p.key, p.src.Stats())
	}
	sort.Slice(states, func(i, j int) bool { return states[i].key.less(states[j].key) })
	for _, st := range states {
		collectState(ch, st.key, st.src.Stats())
	}
	for _, a := range anns {
		collectDiscovery(ch, "announcer", a.name, a.v.Stats())
	}
	for _, w := range wats {
		collectDiscovery(ch, "watcher", w.name, w.v.Stats())
		gauge(ch, descDiscPeers, float64(len(w.v.Peers())), "watcher", w.name)
	}
	if stack {
		st := discovery.StackStats()
		collectDiscovery(ch, "stack", "", st)
		gauge(ch, descDiscSockets, float64(st.Sockets))
	}
}

func (k patternKey) less(o patternKey) bool {
	if k.role != o.role {
		return k.role < o.role
	}
	return k.name < o.name
}

type stateEntry struct {
	key patternKey
	src StateSource
}

type patternEntry struct {
	key patternKey
	src StatsSource
}

type named[V any] struct {
	name string
	v    V
}

func sortedMap[V any](m map[string]V) []named[V] {
	out := make([]named[V], 0, len(m))
	for k, v := range m {
		out = append(out, named[V]{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (c *Collector) collectSocket(ch chan<- prometheus.Metric, name string, s *socket.Socket) {
	st := s.Stats()
	l := []string{name, s.Type().String()}
	counter(ch, descSockMsgsIn, st.MsgsIn, l...)
	counter(ch, descSockMsgsOut, st.MsgsOut, l...)
	counter(ch, descSockBytesIn, st.BytesIn, l...)
	counter(ch, descSockBytesOut, st.BytesOut, l...)
	counter(ch, descSockDrops, st.Drops, l...)
	counter(ch, descSockDiscarded, st.Discarded, l...)
	counter(ch, descSockConnects, st.Connects, l...)
	counter(ch, descSockDisconnects, st.Disconnects, l...)
	counter(ch, descSockReconnects, st.Reconnects, l...)
	r := st.RejectedBy
	for _, rc := range []struct {
		reason string
		n      uint64
	}{{"refused", r.Refused}, {"handshake", r.Handshake}, {"protocol", r.Protocol}, {"admission", r.Admission}} {
		counter(ch, descSockRejected, rc.n, name, l[1], rc.reason)
	}
	counter(ch, descSockEventsDropped, st.EventsDropped, l...)
	gauge(ch, descSockPeers, float64(st.Peers), l...)
	queued := 0
	for _, p := range st.PerPeer {
		queued += p.Queued
	}
	gauge(ch, descSockQueued, float64(queued), l...)
	if c.peerSeries == 0 {
		return
	}
	peers := st.PerPeer
	sort.Slice(peers, func(i, j int) bool { return peers[i].Remote < peers[j].Remote })
	for i, p := range peers {
		if i == c.peerSeries {
			break
		}
		pl := []string{name, l[1], p.Remote}
		counter(ch, descPeerMsgsIn, p.MsgsIn, pl...)
		counter(ch, descPeerMsgsOut, p.MsgsOut, pl...)
		counter(ch, descPeerBytesIn, p.BytesIn, pl...)
		counter(ch, descPeerBytesOut, p.BytesOut, pl...)
		gauge(ch, descPeerQueued, float64(p.Queued), pl...)
	}
}

func collectPattern(ch chan<- prometheus.Metric, k patternKey, st pattern.Stats) {
	l := []string{string(k.role), k.name}
	counter(ch, descPatSent, st.Sent, l...)
	counter(ch, descPatDelivered, st.Delivered, l...)
	counter(ch, descPatAcked, st.Acked, l...)
	counter(ch, descPatRetried, st.Retried, l...)
	counter(ch, descPatDropped, st.Dropped, l...)
	counter(ch, descPatDead, st.Dead, l...)
	counter(ch, descPatGaps, st.Gaps, l...)
	counter(ch, descPatDups, st.Duplicates, l...)
	counter(ch, descPatLate, st.Late, l...)
	counter(ch, descPatErrors, st.Errors, l...)
	counter(ch, descPatPanics, st.Panics, l...)
	counter(ch, descPatRefused, st.Refused, l...)
	gauge(ch, descPatPending, float64(st.Pending), l...)
	inFlight := 0
	for _, p := range st.Peers {
		inFlight += p.InFlight
	}
	gauge(ch, descPatInFlight, float64(inFlight), l...)
	collectRoleSocket(ch, st.Socket, l)
	switch k.role {
	case RoleRequester, RolePusher:
		histogram(ch, descPatRoundTrip, st.Latency, l...)
	case RoleReplier, RolePuller:
		histogram(ch, descPatHandler, st.Handler, l...)
	}
	if o := st.Outbox; o != nil {
		gauge(ch, descOutboxJobs, float64(o.Jobs), l...)
		gauge(ch, descOutboxBytes, float64(o.Bytes), l...)
		gauge(ch, descOutboxSegments, float64(o.Segments), l...)
		counter(ch, descOutboxAppends, o.Appends, l...)
		counter(ch, descOutboxAcks, o.Acks, l...)
		counter(ch, descOutboxWrites, o.Writes, l...)
		counter(ch, descOutboxSyncs, o.Syncs, l...)
		gauge(ch, descOutboxRecovered, float64(o.Recovered), l...)
		gauge(ch, descOutboxCorrupt, float64(o.Corrupt), l...)
	}
}

func collectState(ch chan<- prometheus.Metric, k patternKey, st pattern.StateStats) {
	l := []string{string(k.role), k.name}
	gauge(ch, descStateKeys, float64(st.Keys), l...)
	gauge(ch, descStateSeq, float64(st.Seq), l...)
	counter(ch, descStateChanges, st.Changes, l...)
	counter(ch, descStateSnapshots, st.Snapshots, l...)
	counter(ch, descStateResyncs, st.Resyncs, l...)
	counter(ch, descStateGaps, st.Gaps, l...)
	counter(ch, descStateDropped, st.Dropped, l...)
	if k.role == RoleStateServer {
		gauge(ch, descStateMirrors, float64(st.Mirrors), l...)
	}
	collectRoleSocket(ch, st.Socket, l)
}

// collectRoleSocket exports a pattern or state role's socket traffic.
func collectRoleSocket(ch chan<- prometheus.Metric, c socket.Counters, l []string) {
	counter(ch, descPatSockMsgsIn, c.MsgsIn, l...)
	counter(ch, descPatSockMsgsOut, c.MsgsOut, l...)
	counter(ch, descPatSockBytesIn, c.BytesIn, l...)
	counter(ch, descPatSockBytesOut, c.BytesOut, l...)
	counter(ch, descPatSockDrops, c.Drops, l...)
}

func collectDiscovery(ch chan<- prometheus.Metric, component, service string, st discovery.Stats) {
	l := []string{component, service}
	counter(ch, descDiscPacketsIn, st.PacketsIn, l...)
	counter(ch, descDiscPacketsOut, st.PacketsOut, l...)
	counter(ch, descDiscSendErrors, st.SendErrors, l...)
	counter(ch, descDiscMalformed, st.Malformed, l...)
	counter(ch, descDiscQueueDrops, st.QueueDrops, l...)
	counter(ch, descDiscEventDrops, st.EventDrops, l...)
	counter(ch, descDiscCoalesced, st.EventsCoalesced, l...)
	counter(ch, descDiscPeersUp, st.PeersUp, l...)
	counter(ch, descDiscPeersDown, st.PeersDown, l...)
	counter(ch, descDiscPeersIgnored, st.PeersIgnored, l...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// bucketBounds are pattern.LatencyBounds in seconds.
var bucketBounds = func() []float64 {
	b := make([]float64, len(pattern.LatencyBounds))
	for i, d := range pattern.LatencyBounds {
		b[i] = d.Seconds()
	}
	return b
}()

func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, s pattern.LatencyStats, labels ...string) {
	buckets := make(map[float64]uint64, len(bucketBounds))
	for i, le := range bucketBounds {
		if i < len(s.Buckets) {
			buckets[le] = s.Buckets[i]
		} else {
			buckets[le] = s.Count // no samples yet: every bucket is 0 == Count
		}
	}
	ch <- prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets, labels...)
}
