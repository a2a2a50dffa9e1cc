package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Announcer publishes one socket as a DNS-SD service instance over mDNS
// and answers queries for it until Close, which sends goodbyes.
//
// The records, for service "telemetry", node 3f2a..., socket PUB:
//
//	_telemetry._tcp.local.             PTR  pub-3f2a...-1._telemetry._tcp.local.
//	pub-3f2a...-1._telemetry._tcp.local. SRV  0 0 <port> zp-3f2a...-1.local.
//	pub-3f2a...-1._telemetry._tcp.local. TXT  "zpeer=1" "node=3f2a..." "type=PUB" "rev=1" "ep=tcp://*:5555" ...
//	zp-3f2a...-1.local.                A    <address of the interface the answer goes out on>
//
// It announces on start and on every change (twice, one second apart, as
// RFC 6762 section 8.3 asks) and needs no probing: the node id in the
// instance and host names makes them unique.
type Announcer struct {
	o        options
	ifaces   []net.Interface
	link     *link // the process's mDNS sockets of those interfaces
	stats    counters
	warn     *warner
	svcName  string // "_telemetry._tcp.local."
	instName string // escaped, fully qualified
	instance string // as shown to users
	host     string // "zp-<node>-<n>.local."

	// The announcement's state, guarded by mu.
	mu        sync.Mutex
	closed    bool
	typ       string
	endpoints []string
	meta      map[string]string
	rev       uint64
	txt       []string
	port      uint16

	queries chan query // the stack's reader -> answerLoop; bounded, drops when full
	kick    chan struct{}
	// sendMu orders sends against Close: answers and announcements hold
	// it shared and check leaving; Close takes it to set leaving, so that
	// nothing but goodbyes goes out once the first goodbye has.
	sendMu    sync.RWMutex
	leaving   bool        // guarded by sendMu
	closing   atomic.Bool // set first thing in Close: queries are no longer wanted
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var announceSeq atomic.Uint64

// Announce starts announcing a socket of type socketType (REQ, REP, PUB,
// SUB, PUSH, PULL, DEALER, ROUTER, ...) bound at endpoints (preferred
// first, e.g. "tcp://0.0.0.0:5555"; a wildcard host is replaced by each
// watcher with the address the announcement came from) under the
// application service name service (see ServiceType).
//
// Options: WithLoopback or WithInterfaces, WithMeta, WithTTL, WithNodeID,
// WithInstance. The first announcement has been sent when Announce returns.
func Announce(service, socketType string, endpoints []string, opts ...Option) (*Announcer, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	svc, err := serviceName(service)
	if err != nil {
		return nil, err
	}
	typ, err := parseSocketType(socketType)
	if err != nil {
		return nil, err
	}
	port, err := checkEndpoints(endpoints)
	if err != nil {
		return nil, err
	}
	seq := announceSeq.Add(1)
	instance := o.instance
	if instance == "" {
		instance = fmt.Sprintf("%s-%s-%d", strings.ToLower(typ), o.node, seq)
	}
	a := &Announcer{
		o:         o,
		svcName:   "_" + svc + "._tcp.local.",
		instance:  instance,
		host:      fmt.Sprintf("zp-%s-%d.local.", o.node, seq),
		typ:       typ,
		endpoints: append([]string(nil), endpoints...),
		meta:      maps.Clone(o.meta),
		rev:       1,
		port:      port,
		queries:   make(chan query, queryQueue),
		kick:      make(chan struct{}, 1),
		warn:      newWarner(o.logger),
	}
	a.instName = escapeLabel(instance) + "." + a.svcName
	if a.txt, err = a.encode(); err != nil {
		return nil, err
	}
	ifaces, err := selectInterfaces(&a.o)
	if err != nil {
		return nil, err
	}
	if a.link, err = stack.attach(ifaces, &user{onQuery: a.onQuery}); err != nil {
		return nil, err
	}
	a.ifaces = a.link.ifaces()
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(2)
	go a.answerLoop(ctx)
	go a.repeat(ctx)
	a.announce(a.ttl())
	a.kick <- struct{}{}
	return a, nil
}

// checkEndpoints validates endpoints and returns the SRV port: the port of
// the first tcp endpoint, or 0 when there is none (ipc only).
func checkEndpoints(endpoints []string) (uint16, error) {
	if len(endpoints) == 0 {
		return 0, fmt.Errorf("%w: no endpoint to announce", ErrInvalidEndpoint)
	}
	var port uint16
	for _, ep := range endpoints {
		if err := checkEndpoint(ep); err != nil {
			return 0, err
		}
		if p, err := endpointPort(ep); err == nil && port == 0 {
			port = p
		}
	}
	return port, nil
}

func (a *Announcer) encode() ([]string, error) {
	return encodeTXT(txtData{node: a.o.node, typ: a.typ, rev: a.rev, endpoints: a.endpoints, curve: a.o.curve, meta: a.meta})
}

// Stats returns the Announcer's counters: PacketsIn (queries for its
// records), PacketsOut, SendErrors and QueueDrops (queries dropped while
// its answer queue was full).
func (a *Announcer) Stats() Stats { return a.stats.stats() }

// Instance returns the DNS-SD instance name.
func (a *Announcer) Instance() string { return a.instance }

// NodeID returns the node id published in the announcement.
func (a *Announcer) NodeID() string { return a.o.node }

// SetMeta replaces the application metadata (same rules as WithMeta) and
// announces the change; watchers report PeerUpdated.
func (a *Announcer) SetMeta(meta map[string]string) error {
	if err := checkMeta(meta); err != nil {
		return err
	}
	return a.update(func() { a.meta = maps.Clone(meta) })
}

// SetEndpoints replaces the announced endpoints and announces the change;
// watchers report PeerUpdated.
func (a *Announcer) SetEndpoints(endpoints ...string) error {
	port, err := checkEndpoints(endpoints)
	if err != nil {
		return err
	}
	return a.update(func() {
		a.endpoints = append([]string(nil), endpoints...)
		a.port = port
	})
}

func (a *Announcer) update(change func()) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	oldMeta, oldEps, oldPort := a.meta, a.endpoints, a.port
	change()
	a.rev++
	txt, err := a.encode()
	if err != nil {
		a.meta, a.endpoints, a.port = oldMeta, oldEps, oldPort
		a.rev--
		a.mu.Unlock()
		return err
	}
	a.txt = txt
	a.mu.Unlock()
	a.announce(a.ttl())
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// Close sends goodbyes (records with TTL 0), so that watchers report the
// peer down at once, and stops answering. It is idempotent.
func (a *Announcer) Close() error {
	a.closeOnce.Do(func() {
		a.closing.Store(true)
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		a.cancel()
		a.sendMu.Lock()
		a.leaving = true
		a.sendMu.Unlock()
		// Twice, against the loss of one packet.
		a.goodbye()
		a.goodbye()
		a.link.detach() // the last user of an interface closes its socket
		a.wg.Wait()
	})
	return nil
}

func (a *Announcer) ttl() uint32 { return uint32(a.o.ttl / time.Second) }

// repeat sends the second announcement one second after each first one.
func (a *Announcer) repeat(ctx context.Context) {
	defer a.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
			t.Reset(time.Second)
		case <-t.C:
			a.announce(a.ttl())
		}
	}
}

// announce multicasts every record on every interface.
func (a *Announcer) announce(ttl uint32) {
	a.sendMu.RLock()
	defer a.sendMu.RUnlock()
	if a.leaving {
		return
	}
	a.multicastAll(ttl)
}

// goodbye multicasts every record with TTL 0.
func (a *Announcer) goodbye() { a.multicastAll(0) }

func (a *Announcer) multicastAll(ttl uint32) {
	for _, ifi := range a.ifaces {
		m := new(dns.Msg)
		m.Response = true
		m.Authoritative = true
		m.Compress = true
		if !a.answer(&m.Answer, ifi, ttl, true, recAll) {
			continue
		}
		if b, err := m.Pack(); err == nil {
			a.sent(a.link.multicast(b, ifi.Index))
		}
	}
}

// sent counts a packet sent, or counts and logs a send error.
func (a *Announcer) sent(err error) {
	if err != nil {
		a.stats.sendErrors.Add(1)
		a.warn.warn("discovery: announcer cannot send", "instance", a.instance, "err", err)
		return
	}
	a.stats.packetsOut.Add(1)
}

// Which records an answer holds.
const (
	recPTR = 1 << iota
	recSRV
	recTXT
	recA
	recMeta // _services._dns-sd._udp PTR
	recAll  = recPTR | recSRV | recTXT | recA
)

// answer appends the chosen records, as they are on interface ifi, to rrs.
// It returns false when the interface has no address to announce.
func (a *Announcer) answer(rrs *[]dns.RR, ifi net.Interface, ttl uint32, flush bool, which int) bool {
	addrs := announceAddrs(ifi, a.o.loopback)
	if len(addrs) == 0 {
		return false
	}
	a.mu.Lock()
	txt, port := a.txt, a.port
	a.mu.Unlock()
	class := uint16(dns.ClassINET)
	if flush {
		class |= 1 << 15 // cache-flush: unique records (RFC 6762 section 10.2)
	}
	hdr := func(name string, t uint16, cl uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: cl, Ttl: ttl}
	}
	if which&recMeta != 0 {
		*rrs = append(*rrs, &dns.PTR{Hdr: hdr("_services._dns-sd._udp.local.", dns.TypePTR, dns.ClassINET, ttl), Ptr: a.svcName})
	}
	if which&recPTR != 0 {
		*rrs = append(*rrs, &dns.PTR{Hdr: hdr(a.svcName, dns.TypePTR, dns.ClassINET, ttl), Ptr: a.instName})
	}
	if which&recSRV != 0 {
		*rrs = append(*rrs, &dns.SRV{Hdr: hdr(a.instName, dns.TypeSRV, class, ttl), Port: port, Target: a.host})
	}
	if which&recTXT != 0 {
		*rrs = append(*rrs, &dns.TXT{Hdr: hdr(a.instName, dns.TypeTXT, class, ttl), Txt: txt})
	}
	if which&recA != 0 {
		attl := ttl
		if attl > 120 {
			attl = 120 // RFC 6762 section 10: host records 120 s
		}
		for _, ip := range addrs {
			*rrs = append(*rrs, &dns.A{Hdr: hdr(a.host, dns.TypeA, class, attl), A: ip})
		}
	}
	return true
}

// onQuery takes a query from the stack's reader (which parsed it once
// for every user of the interface). It never blocks; it reports false when
// the answer queue was full and the query was dropped.
func (a *Announcer) onQuery(p packet) bool {
	q := p.msg
	if q.Response || q.Opcode != dns.OpcodeQuery || a.closing.Load() {
		return true
	}
	return a.handleQuery(q, p.ifIndex, p.src)
}

// query is what a packet asked of us.
type query struct {
	want    int // rec* bits
	ifIndex int
	legacy  *dns.Msg     // a legacy unicast query, answered at once
	src     *net.UDPAddr // its sender
	// A multicast query whose known answers go on in further packets
	// (RFC 6762 section 7.2): more is set on every packet but the last,
	// known when this packet lists our PTR record as known.
	more, known bool
	cont        bool // a packet without questions: only a continuation
}

// queryQueue bounds the queries waiting for answerLoop. Multicast ones
// are merged per interface every answerDelay, so a full queue means a
// flood; a dropped querier asks again.
const queryQueue = 64

// handleQuery queues what q asks of this announcer; it reports false when
// the queue was full and the query dropped.
func (a *Announcer) handleQuery(q *dns.Msg, ifIndex int, src *net.UDPAddr) bool {
	want := 0
	known := a.knownAnswer(q)
	for _, qs := range q.Question {
		if c := qs.Qclass &^ (1 << 15); c != dns.ClassINET && c != dns.ClassANY {
			continue
		}
		name := strings.ToLower(qs.Name)
		t := qs.Qtype
		switch {
		case name == a.svcName && (t == dns.TypePTR || t == dns.TypeANY):
			if !known {
				want |= recPTR
			}
		case name == strings.ToLower(a.instName):
			switch t {
			case dns.TypeSRV:
				want |= recSRV
			case dns.TypeTXT:
				want |= recTXT
			case dns.TypeANY:
				want |= recSRV | recTXT
			}
		case name == strings.ToLower(a.host) && (t == dns.TypeA || t == dns.TypeANY):
			want |= recA
		case name == "_services._dns-sd._udp.local." && (t == dns.TypePTR || t == dns.TypeANY):
			want |= recMeta
		}
	}
	// A packet without questions may continue a query with the TC bit:
	// what matters is whether it lists us.
	continued := len(q.Question) == 0 && known
	if want == 0 && !continued {
		return true
	}
	a.stats.packetsIn.Add(1)
	qq := query{want: want, ifIndex: ifIndex, src: src, more: q.Truncated, known: known, cont: continued}
	if src != nil && src.Port != mdnsPort {
		if want == 0 {
			return true
		}
		qq.legacy = q
	}
	select {
	case a.queries <- qq:
		return true
	default: // flooded: drop, the querier asks again (answerLoop logs it)
		a.stats.queueDrops.Add(1)
		return false
	}
}

// answerDelay is how long multicast answers wait so that the queries of
// that time get one answer per interface (RFC 6762 section 6 asks 20 to
// 120 ms for shared records). It bounds the answers to 50 per second per
// interface, whatever the query rate: every Watcher of every process on
// the link asks once per refresh period.
const answerDelay = 20 * time.Millisecond

// answerLoop sends the answers: legacy unicast ones at once, multicast
// ones gathered per interface for answerDelay. A multicast query with the
// TC bit waits for the rest of its known answers (tcHold).
func (a *Announcer) answerLoop(ctx context.Context) {
	defer a.wg.Done()
	pending := make(map[int]int)
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	var held tcHold
	ht := time.NewTimer(time.Hour)
	ht.Stop()
	defer ht.Stop()
	answer := func(ifIndex, want int) {
		if want == 0 {
			return
		}
		if len(pending) == 0 {
			t.Reset(answerDelay)
		}
		pending[ifIndex] |= want
	}
	var logged uint64 // queue drops logged so far
	for {
		// Drops are counted on the stack's reader; they are logged here,
		// where a slow log handler holds up nobody else.
		a.warn.warnGrowth(&a.stats.queueDrops, &logged, "discovery: announcer dropped queries (queue full)",
			"dropped", "instance", a.instance, "queue", queryQueue)
		select {
		case <-ctx.Done():
			return
		case q := <-a.queries:
			if q.legacy != nil {
				a.send(q.ifIndex, q.want, q.legacy, q.src)
				continue
			}
			answer(held.add(q, time.Now()))
			resetTo(ht, held.next())
		case now := <-ht.C:
			for _, d := range held.expired(now) {
				answer(d.ifIndex, d.want)
			}
			resetTo(ht, held.next())
		case <-t.C:
			for ifIndex, want := range pending {
				a.send(ifIndex, want, nil, nil)
			}
			clear(pending)
		}
	}
}

// tcHold holds the answers to multicast queries with the TC bit until the
// rest of their known answers has come (RFC 6762 section 7.2): until the
// sender's packet without the TC bit, at most 400-500 ms. Continuation
// packets that list our PTR record take it out of the answer.
type tcHold struct {
	held map[string]*heldQuery // by sender and interface
}

// heldQuery is what a query with the TC bit asked so far.
type heldQuery struct {
	ifIndex int
	want    int
	until   time.Time
}

// add takes a query at time now and returns what to answer now, on which
// interface (want 0: nothing yet).
func (h *tcHold) add(q query, now time.Time) (ifIndex, want int) {
	key := fmt.Sprint(q.src, "/", q.ifIndex)
	d := h.held[key]
	switch {
	case d == nil && q.cont:
		return 0, 0 // continues nothing held
	case d == nil && !q.more:
		return q.ifIndex, q.want
	case d == nil:
		if h.held == nil {
			h.held = make(map[string]*heldQuery)
		}
		d = &heldQuery{ifIndex: q.ifIndex, until: now.Add(tcDelay())}
		h.held[key] = d
	}
	d.want |= q.want
	if q.known {
		d.want &^= recPTR
	}
	if q.more {
		return 0, 0
	}
	delete(h.held, key)
	return d.ifIndex, d.want
}

// expired removes and returns the queries whose wait is over at now.
func (h *tcHold) expired(now time.Time) []heldQuery {
	var out []heldQuery
	for key, d := range h.held {
		if !now.Before(d.until) {
			delete(h.held, key)
			out = append(out, *d)
		}
	}
	return out
}

// next returns when the first held query's wait ends (zero: none held).
func (h *tcHold) next() time.Time {
	var first time.Time
	for _, d := range h.held {
		if first.IsZero() || d.until.Before(first) {
			first = d.until
		}
	}
	return first
}

// tcDelay is how long the continuation of a query with the TC bit is
// awaited: 400-500 ms, at random (RFC 6762 section 7.2).
func tcDelay() time.Duration { return 400*time.Millisecond + rand.N(100*time.Millisecond) }

// resetTo sets t to fire at (stops it when at is zero).
func resetTo(t *time.Timer, at time.Time) {
	if at.IsZero() {
		t.Stop()
		return
	}
	t.Reset(max(0, time.Until(at)))
}

// send answers on one interface: to the group, or to src for a legacy
// unicast query (RFC 6762 section 6.7: the querier's id and questions,
// TTLs of at most 10 s, no cache-flush bit).
func (a *Announcer) send(ifIndex, want int, legacy *dns.Msg, src *net.UDPAddr) {
	a.sendMu.RLock()
	defer a.sendMu.RUnlock()
	if a.leaving {
		return
	}
	var ifi net.Interface
	for _, i := range a.ifaces {
		if i.Index == ifIndex {
			ifi = i
		}
	}
	ttl := a.ttl()
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = true
	m.Compress = true
	if legacy != nil {
		m.Id = legacy.Id
		m.Question = legacy.Question
		ttl = min(ttl, 10)
	}
	if !a.answer(&m.Answer, ifi, ttl, legacy == nil, want) {
		return
	}
	// Additional records (RFC 6763 section 12): whatever completes the
	// answer.
	extra := 0
	if want&recPTR != 0 {
		extra |= recSRV | recTXT | recA
	}
	if want&recSRV != 0 {
		extra |= recA
	}
	if extra &^= want; extra != 0 {
		a.answer(&m.Extra, ifi, ttl, legacy == nil, extra)
	}
	b, err := m.Pack()
	if err != nil {
		return
	}
	if legacy != nil {
		a.sent(a.link.send(b, ifIndex, src))
		return
	}
	// Answers go to the group even for QU questions (RFC 6762 section 5.4
	// allows it): unicast to port 5353 reaches only one of the sockets
	// sharing the port.
	a.sent(a.link.multicast(b, ifIndex))
}

// knownAnswer reports whether the query already lists our PTR record with
// at least half its TTL (known-answer suppression, RFC 6762 section 7.1).
func (a *Announcer) knownAnswer(q *dns.Msg) bool {
	for _, rr := range q.Answer {
		if p, ok := rr.(*dns.PTR); ok && strings.EqualFold(p.Hdr.Name, a.svcName) &&
			strings.EqualFold(p.Ptr, a.instName) && p.Hdr.Ttl >= a.ttl()/2 {
			return true
		}
	}
	return false
}

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }
