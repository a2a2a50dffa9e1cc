package discovery

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// mdnsSource finds peers over mDNS through the process's shared stack
// (stack.go):
//
//   - Browse: every refresh period (and on Refresh) it multicasts a PTR
//     query for the service type on each interface. Every responder
//     answers it, so each answer is a fresh sighting. (RFC 6762 section
//     5.2 asks continuous queriers to back off; a watcher must instead
//     hear from every peer within its expiry, so it asks every period,
//     and responders bound their answers to one per 20 ms per interface.)
//   - Listen: it reads every mDNS response the stack hands it: goodbyes
//     (TTL 0), announcements of new peers and of changes, and answers to
//     anyone's queries, its own included.
//
// Responses reach it through a bounded queue (inbox): the stack's reader
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
	stopping atomic.Bool // set when run ends: packets are no longer wanted

	cache map[string]*sighting // handler goroutine only
}

// inboxSize bounds the responses waiting for a watcher's handler.
const inboxSize = 128

// sighting gathers what the listener learnt about one instance, as answers
// may come in pieces.
type sighting struct {
	name    string
	txt     []string
	port    uint16
	host    string
	addrs   []net.IP
	ifIndex int
	hasTXT  bool
	hasSRV  bool
	at      time.Time
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
	}
	if s.link, err = stack.attach(ifaces, &user{onResponse: s.onResponse}); err != nil {
		return nil, err
	}
	s.ifaces = s.link.ifaces()
	for _, ifi := range s.ifaces {
		s.nets[ifi.Index] = ipv4Addrs(ifi)
	}
	return s, nil
}

// onResponse takes a response from the stack's reader without blocking.
func (s *mdnsSource) onResponse(p packet) bool {
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

func (s *mdnsSource) refresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run browses and handles responses until ctx is done, then leaves the
// stack (closing the sockets nobody else uses).
func (s *mdnsSource) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.listen(ctx)
	}()
	s.browseLoop(ctx)
	s.stopping.Store(true)
	s.link.detach()
	wg.Wait()
}

// minBrowseGap keeps ReportUnreachable storms from querying more often
// than this.
const minBrowseGap = 100 * time.Millisecond

// browseLoop sends a query every refresh period, and on refresh.
func (s *mdnsSource) browseLoop(ctx context.Context) {
	t := time.NewTicker(s.w.o.refresh)
	defer t.Stop()
	q := new(dns.Msg)
	q.SetQuestion(s.svcName, dns.TypePTR)
	q.RecursionDesired = false
	pkt, err := q.Pack()
	if err != nil { // a valid service name always packs
		s.w.warn.warn("discovery: cannot build the browse query", "service", s.w.service, "err", err)
		<-ctx.Done()
		return
	}
	for {
		started := time.Now()
		for _, ifi := range s.ifaces {
			if err := s.link.multicast(pkt, ifi.Index); err != nil {
				s.w.stats.sendErrors.Add(1)
				s.w.warn.warn("discovery: watcher cannot send its query", "service", s.w.service, "err", err)
			} else {
				s.w.stats.packetsOut.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			if d := minBrowseGap - time.Since(started); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// listen handles the responses of the inbox until ctx is done.
func (s *mdnsSource) listen(ctx context.Context) {
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			s.stopping.Store(true)
			return
		case p := <-s.inbox:
			s.handle(p.msg, p.ifIndex, p.at)
			if p.at.Sub(lastPrune) > s.w.o.expiry {
				s.prune(p.at)
				lastPrune = p.at
			}
		}
	}
}

func (s *mdnsSource) prune(now time.Time) {
	for k, c := range s.cache {
		if now.Sub(c.at) > 2*s.w.o.expiry {
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
					}
				}
			case *dns.SRV:
				if inService(h.Name) {
					o := get(h.Name)
					if h.Ttl == 0 {
						o.goodbye = true
					} else {
						o.port, o.host, o.hasSRV = rr.Port, strings.ToLower(rr.Target), true
					}
				}
			case *dns.TXT:
				if inService(h.Name) {
					o := get(h.Name)
					o.txt = rr.Txt
					o.txtLive = h.Ttl > 0
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
			c.addrs, c.ifIndex = ips, ifIndex
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
		c.at = at
		if o.txtLive {
			c.txt, c.hasTXT = o.txt, true
		}
		if o.hasSRV {
			c.port, c.host, c.hasSRV = o.port, o.host, true
		}
		if len(o.addrs) > 0 {
			c.addrs, c.ifIndex = o.addrs, ifIndex
		}
		if c.hasTXT && c.hasSRV {
			if p, rev, sig, ok := s.peer(key, c.name, c.txt, c.port, c.addrs, c.ifIndex); ok {
				s.w.seen("mdns", p, rev, sig, at)
				continue
			}
		}
		s.w.alive(key, at)
	}
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
