package discovery

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
)

// mdnsSource finds peers over mDNS in two ways that complement each other:
//
//   - Browse: every refresh period a fresh grandcat/zeroconf Resolver
//     browses the service type. grandcat reports each instance once per
//     browse, stops querying after the first answer and never reports
//     removals, so a new browse is the only way to hear again from a peer
//     through it; its answers count as sightings.
//   - Listen: a socket of our own on the same interfaces reads every mDNS
//     response: goodbyes (TTL 0, which grandcat drops), announcements of
//     new peers and of changes (grandcat reports an instance only once per
//     browse), and answers to anyone's queries. It also reads packets that
//     grandcat's miekg/dns cannot parse (see unpackMDNS).
type mdnsSource struct {
	w        *Watcher
	svcType  string // "_telemetry._tcp"
	svcName  string // "_telemetry._tcp.local."
	ifaces   []net.Interface
	nets     map[int][]*net.IPNet // per interface index
	loopback bool
	conn     *mconn
	kick     chan struct{}

	cache map[string]*sighting // listener goroutine only
}

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
	conn, err := openMDNS(ifaces)
	if err != nil {
		return nil, err
	}
	s := &mdnsSource{
		w:        w,
		svcType:  "_" + w.service + "._tcp",
		svcName:  "_" + w.service + "._tcp.local.",
		ifaces:   conn.ifaces,
		nets:     make(map[int][]*net.IPNet),
		loopback: w.o.loopback,
		conn:     conn,
		kick:     make(chan struct{}, 1),
		cache:    make(map[string]*sighting),
	}
	for _, ifi := range s.ifaces {
		s.nets[ifi.Index] = ipv4Addrs(ifi)
	}
	return s, nil
}

func (s *mdnsSource) refresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *mdnsSource) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.listen(ctx)
	}()
	s.browseLoop(ctx)
	wg.Wait()
}

// minBrowseGap keeps ReportUnreachable storms from restarting the browse
// more often than this.
const minBrowseGap = 100 * time.Millisecond

// browseLoop runs one grandcat browse per refresh period. The next browse
// starts before the previous one is stopped, so there is no gap.
func (s *mdnsSource) browseLoop(ctx context.Context) {
	t := time.NewTicker(s.w.o.refresh)
	defer t.Stop()
	var prev *browse
	for {
		started := time.Now()
		cur := s.startBrowse(ctx)
		prev.stop()
		prev = cur
		select {
		case <-ctx.Done():
			prev.stop()
			return
		case <-t.C:
		case <-s.kick:
			if d := minBrowseGap - time.Since(started); d > 0 {
				select {
				case <-ctx.Done():
					prev.stop()
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// browse is one running grandcat browse.
type browse struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (b *browse) stop() {
	if b == nil {
		return
	}
	b.cancel()
	<-b.done
}

func (s *mdnsSource) startBrowse(ctx context.Context) *browse {
	r, err := zeroconf.NewResolver(zeroconf.SelectIfaces(s.ifaces), zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err != nil {
		return nil // the listener still works; try again next period
	}
	bctx, cancel := context.WithCancel(ctx)
	entries := make(chan *zeroconf.ServiceEntry, 16)
	b := &browse{cancel: cancel, done: make(chan struct{})}
	// grandcat closes entries when the browse ends, also when Browse
	// fails; its main loop blocks on a full channel, so drain it to the
	// end.
	go func() {
		defer close(b.done)
		for e := range entries {
			s.entry(e, time.Now())
		}
	}()
	if err := r.Browse(bctx, s.svcType, "local.", entries); err != nil {
		cancel()
	}
	return b
}

// entry handles a grandcat browse result.
func (s *mdnsSource) entry(e *zeroconf.ServiceEntry, at time.Time) {
	if e == nil || len(e.Text) == 0 {
		return
	}
	name := e.ServiceInstanceName()
	key := "mdns:" + strings.ToLower(name)
	if p, rev, sig, ok := s.peer(key, name, e.Text, uint16(e.Port), e.AddrIPv4, 0); ok {
		s.w.seen("mdns", p, rev, sig, at)
	}
}

// listen reads mDNS responses until ctx is done.
func (s *mdnsSource) listen(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { s.conn.close() })
	defer stop()
	defer s.conn.close()
	buf := make([]byte, 9000)
	lastPrune := time.Now()
	for {
		n, ifIndex, _, err := s.conn.recv(buf)
		if err != nil {
			if ctx.Err() != nil || isClosedErr(err) {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if n < 12 || buf[2]&0x80 == 0 { // queries are not evidence
			continue
		}
		at := time.Now()
		m, err := unpackMDNS(buf[:n])
		if err != nil {
			continue
		}
		s.handle(m, ifIndex, at)
		if at.Sub(lastPrune) > s.w.o.expiry {
			s.prune(at)
			lastPrune = at
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
// interface is unknown (grandcat's results: its sockets take packets from
// every interface), only an address on a selected interface's subnet will
// do. In single-machine mode only a loopback address will do.
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
