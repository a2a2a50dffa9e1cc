package discovery

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// mdnsSource finds peers over mDNS through the process's shared stack
// (stack.go), on one goroutine:
//
//   - Query: it multicasts PTR queries for the service type on each
//     interface, on the schedule of querier.go (RFC 6762 continuous
//     querying with known-answer and duplicate-question suppression):
//     often at start, then once per refresh period at most, plus when a
//     known peer's records near the end of their lifetime.
//   - Listen: it reads every mDNS response the stack hands it: goodbyes
//     (TTL 0), announcements of new peers and of changes, and answers to
//     anyone's queries, its own included; and the queries for its service
//     that others send, which may stand for its own.
//
// Packets reach it through a bounded queue (inbox): the stack's reader
// never waits for a watcher; a full queue drops the packet and counts it.
type mdnsSource struct {
	w        *Watcher
	svcName  string               // "_telemetry._tcp.local."
	nets     map[int][]*net.IPNet // per interface index
	loopback bool
	link     *link
	ifaces   []net.Interface
	inbox    chan packet
	kick     chan struct{}
	full     atomic.Bool // Refresh asked for a fresh browse
	requery  atomic.Bool // ReportUnreachable asked for a query now
	stopping atomic.Bool // set when run ends: packets are no longer wanted

	// The handler goroutine's own state.
	cache    map[string]*sighting  // by Peer.Key
	scheds   []*ifSched            // one per interface
	pendingQ map[string]*seenQuery // queries with the TC bit seen, by source address, awaiting their continuation
}

// inboxSize bounds the packets waiting for a watcher's handler.
const inboxSize = 128

// sighting gathers what the listener learnt about one instance, as answers
// may come in pieces.
type sighting struct {
	name    string
	txt     []string
	port    uint16
	host    string
	addrs   []net.IP
	addrIf  int // the interface addrs came in on
	ifIndex int // the interface it was last seen on
	hasTXT  bool
	hasSRV  bool
	peer    bool          // reported to the Watcher as a peer (not its own node, not a foreign service)
	at      time.Time     // last seen
	ttl     uint32        // the TTL its records came with
	life    time.Duration // min(ttl, expiry): how long after at its records live
	jitter  float64       // of its refresh points, drawn when it was seen
}

func newMDNSSource(w *Watcher) (*mdnsSource, error) {
	ifaces, err := selectInterfaces(&w.o)
	if err != nil {
		return nil, err
	}
	s := &mdnsSource{
		w:        w,
		svcName:  "_" + w.service + "._tcp.local.",
		nets:     make(map[int][]*net.IPNet),
		loopback: w.o.loopback,
		inbox:    make(chan packet, inboxSize),
		kick:     make(chan struct{}, 1),
		cache:    make(map[string]*sighting),
		pendingQ: make(map[string]*seenQuery),
	}
	if s.link, err = stack.attach(ifaces, &user{onResponse: s.onResponse, onQuery: s.onQuery}); err != nil {
		return nil, err
	}
	s.ifaces = s.link.ifaces()
	for _, ifi := range s.ifaces {
		s.nets[ifi.Index] = ipv4Addrs(ifi)
		q := &ifSched{ifIndex: ifi.Index}
		q.restart(w.o.refresh)
		s.scheds = append(s.scheds, q)
	}
	return s, nil
}

// onResponse takes a response from the stack's reader without blocking.
func (s *mdnsSource) onResponse(p packet) bool { return s.enqueue(p) }

// enqueue hands a packet from the stack's reader to the handler without
// blocking; it reports false when the inbox was full and the packet was
// dropped.
func (s *mdnsSource) enqueue(p packet) bool {
	if s.stopping.Load() {
		return true // not a drop: nobody wants it any more
	}
	select {
	case s.inbox <- p:
		s.w.stats.packetsIn.Add(1)
		return true
	default: // the janitor logs it
		s.w.stats.queueDrops.Add(1)
		return false
	}
}

// onQuery takes, from the stack's reader, the queries that concern the
// service (duplicate question suppression).
func (s *mdnsSource) onQuery(p packet) bool {
	if !wantsQuery(p.msg, s.svcName) {
		return true
	}
	return s.enqueue(p)
}

func (s *mdnsSource) refresh(full bool) {
	if full {
		s.full.Store(true)
	} else {
		s.requery.Store(true)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// minBrowseGap keeps Refresh and ReportUnreachable storms from querying
// more often than this.
const minBrowseGap = 100 * time.Millisecond

// run queries and handles packets until ctx is done, then leaves the
// stack (closing the sockets nobody else uses).
func (s *mdnsSource) run(ctx context.Context) {
	defer s.link.detach()
	defer s.stopping.Store(true)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		t.Reset(max(0, time.Until(s.nextDue())))
		select {
		case <-ctx.Done():
			return
		case p := <-s.inbox:
			if p.msg.Response {
				s.handle(p.msg, p.ifIndex, p.at)
			} else {
				s.handleQuery(p)
			}
			if p.at.Sub(lastPrune) > s.w.o.expiry {
				s.prune(p.at)
				lastPrune = p.at
			}
		case <-s.kick:
			full, requery := s.full.Swap(false), s.requery.Swap(false)
			for _, q := range s.scheds {
				if full {
					q.restart(s.w.o.refresh)
				}
				q.asap = q.asap || requery
			}
		case now := <-t.C:
			s.queryDue(now)
		}
	}
}

// prune forgets instances not seen for twice their lifetime: the Watcher
// reported them down (expired) long ago.
func (s *mdnsSource) prune(now time.Time) {
	for k, c := range s.cache {
		if now.Sub(c.at) > 2*c.life {
			delete(s.cache, k)
		}
	}
}

// observation is what one response says about one instance.
type observation struct {
	name    string
	goodbye bool
	txt     []string
	txtLive bool // a TXT record with TTL > 0
	port    uint16
	host    string
	hasSRV  bool
	addrs   []net.IP
	ttl     uint32 // of its PTR record, else of its SRV or TXT record
	ptrTTL  bool   // ttl is the PTR record's
}

// observe extracts the instances of service svcName from a response, and
// the A records by host name.
func observe(m *dns.Msg, svcName string) ([]*observation, map[string][]net.IP) {
	var order []*observation
	byName := make(map[string]*observation)
	get := func(name string) *observation {
		k := strings.ToLower(name)
		o := byName[k]
		if o == nil {
			o = &observation{name: name}
			byName[k] = o
			order = append(order, o)
		}
		return o
	}
	suffix := "." + strings.ToLower(svcName)
	inService := func(name string) bool {
		return strings.HasSuffix(strings.ToLower(name), suffix) && len(name) > len(suffix)
	}
	hosts := make(map[string][]net.IP)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			switch rr := rr.(type) {
			case *dns.PTR:
				if strings.EqualFold(h.Name, svcName) && inService(rr.Ptr) {
					o := get(rr.Ptr)
					if h.Ttl == 0 {
						o.goodbye = true
					} else {
						o.ttl, o.ptrTTL = h.Ttl, true
					}
				}
			case *dns.SRV:
				if inService(h.Name) {
					o := get(h.Name)
					if h.Ttl == 0 {
						o.goodbye = true
					} else {
						o.port, o.host, o.hasSRV = rr.Port, strings.ToLower(rr.Target), true
						if !o.ptrTTL {
							o.ttl = h.Ttl
						}
					}
				}
			case *dns.TXT:
				if inService(h.Name) {
					o := get(h.Name)
					o.txt = rr.Txt
					o.txtLive = h.Ttl > 0
					if o.txtLive && o.ttl == 0 {
						o.ttl = h.Ttl
					}
				}
			case *dns.A:
				if h.Ttl > 0 {
					k := strings.ToLower(h.Name)
					hosts[k] = append(hosts[k], rr.A)
				}
			}
		}
	}
	for _, o := range order {
		if o.hasSRV {
			o.addrs = hosts[o.host]
		}
	}
	return order, hosts
}

// handle applies one response.
func (s *mdnsSource) handle(m *dns.Msg, ifIndex int, at time.Time) {
	obs, hosts := observe(m, s.svcName)
	// A records alone: new addresses for instances already known.
	for _, c := range s.cache {
		if ips, ok := hosts[c.host]; ok && c.hasSRV {
			c.addrs, c.addrIf = ips, ifIndex
		}
	}
	for _, o := range obs {
		key := "mdns:" + strings.ToLower(o.name)
		if o.goodbye {
			delete(s.cache, key)
			var rev uint64
			if d, ok := parseTXT(o.txt); ok {
				if s.w.self(d.node) {
					continue
				}
				rev = d.rev
			}
			s.w.gone(key, rev, at)
			continue
		}
		c := s.cache[key]
		if c == nil {
			if len(s.cache) >= MaxPeers {
				s.prune(at)
			}
			if len(s.cache) >= MaxPeers {
				s.w.ignore(o.name)
				continue
			}
			c = &sighting{name: o.name}
			s.cache[key] = c
		}
		c.at, c.ifIndex = at, ifIndex
		if o.ttl > 0 {
			c.ttl = o.ttl
		}
		c.life = s.life(c.ttl)
		c.jitter = rand.Float64() * refreshJitter
		if o.txtLive {
			c.txt, c.hasTXT = o.txt, true
		}
		if o.hasSRV {
			c.port, c.host, c.hasSRV = o.port, o.host, true
		}
		if len(o.addrs) > 0 {
			c.addrs, c.addrIf = o.addrs, ifIndex
		}
		c.peer = false
		if c.hasTXT && c.hasSRV {
			if p, rev, sig, ok := s.peer(key, c.name, c.txt, c.port, c.addrs, c.addrIf); ok {
				c.peer = true
				s.w.seenFor("mdns", p, rev, sig, at, c.life)
				continue
			}
		}
		s.w.aliveFor(key, at, c.life)
	}
}

// life returns how long records that came with ttl live: ttl, at most
// the expiry (WithExpiry); the expiry for a TTL never heard.
func (s *mdnsSource) life(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if d <= 0 || d > s.w.o.expiry {
		return s.w.o.expiry
	}
	return d
}

// peer turns an announcement into a Peer. ifIndex is the interface it came
// in on, 0 if unknown.
func (s *mdnsSource) peer(key, name string, txt []string, port uint16, addrs []net.IP, ifIndex int) (Peer, uint64, string, bool) {
	d, err := decodeTXT(txt)
	if err != nil || s.w.self(d.node) {
		return Peer{}, 0, "", false
	}
	ip := s.pickAddr(addrs, ifIndex)
	var eps []string
	for _, ep := range d.endpoints {
		if !s.loopback && hostLocal(ep) {
			continue // another host's ipc path means nothing here
		}
		if wildcardHost(ep) {
			if ip == nil {
				continue
			}
			ep = resolveEndpoint(ep, ip)
		}
		eps = append(eps, ep)
	}
	if len(d.endpoints) == 0 && ip != nil && port != 0 {
		eps = []string{"tcp://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))}
	}
	if len(eps) == 0 {
		return Peer{}, 0, "", false
	}
	label := name
	if len(name) > len(s.svcName)+1 {
		label = name[:len(name)-len(s.svcName)-1]
	}
	p := Peer{
		Key:       key,
		Source:    "mdns",
		Node:      d.node,
		Service:   s.w.service,
		Instance:  unescapeLabel(label),
		Type:      d.typ,
		Endpoints: eps,
		Meta:      d.meta,
		Curve:     d.curve,
	}
	sig := strings.Join(txt, "\x00") + "\x00" + strconv.Itoa(int(port))
	return p, d.rev, sig, true
}

// pickAddr chooses the address to connect to: one on the subnet of the
// interface the announcement came in on, else the first one. When the
// interface is unknown (ifIndex 0, which the stack never hands out), only
// an address on a selected interface's subnet will do. In single-machine
// mode only a loopback address will do.
func (s *mdnsSource) pickAddr(addrs []net.IP, ifIndex int) net.IP {
	var v4 []net.IP
	for _, a := range addrs {
		if a4 := a.To4(); a4 != nil {
			v4 = append(v4, a4)
		}
	}
	if s.loopback {
		for _, a := range v4 {
			if a.IsLoopback() {
				return a
			}
		}
		return nil
	}
	for _, a := range v4 {
		for idx, nets := range s.nets {
			if ifIndex != 0 && idx != ifIndex {
				continue
			}
			for _, n := range nets {
				if n.Contains(a) {
					return a
				}
			}
		}
	}
	if len(v4) > 0 && ifIndex != 0 {
		return v4[0]
	}
	return nil
}
