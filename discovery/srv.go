package discovery

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// srvSource re-resolves one DNS SRV name over unicast DNS every refresh
// period. Each SRV record is a peer; TXT records in the zpeer schema at the
// SRV name (for every target) and at the target (for that one) give node
// id, socket type, endpoints and metadata. A lookup that fails (timeout,
// SERVFAIL) keeps the last list; NXDOMAIN or an empty answer empties it.
type srvSource struct {
	w      *Watcher
	spec   srvSpec
	id     string
	server string
	kick   chan struct{}
}

func newSRVSource(w *Watcher, spec srvSpec) (*srvSource, error) {
	server := w.o.dnsServer
	if server == "" {
		cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cfg.Servers) == 0 {
			return nil, fmt.Errorf("%w: no DNS server for %s (WithDNSServer): %v", ErrOption, spec.name, err)
		}
		server = net.JoinHostPort(cfg.Servers[0], cfg.Port)
	}
	return &srvSource{w: w, spec: spec, id: "srv " + spec.name, server: server, kick: make(chan struct{}, 1)}, nil
}

func (s *srvSource) refresh(bool) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *srvSource) run(ctx context.Context) {
	t := time.NewTicker(s.w.o.refresh)
	defer t.Stop()
	for {
		s.lookup(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// lookupTimeout bounds one DNS exchange.
const lookupTimeout = 2 * time.Second

func (s *srvSource) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: lookupTimeout}
	r, _, err := c.ExchangeContext(ctx, m, s.server)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, s.server)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *srvSource) lookup(ctx context.Context) {
	at := time.Now()
	r, err := s.exchange(ctx, s.spec.name, dns.TypeSRV)
	if err != nil || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) {
		return // keep the last list
	}
	var srvs []*dns.SRV
	for _, rr := range r.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, srv)
		}
	}
	addrs := make(map[string][]net.IP)
	txts := make(map[string][]string)
	for _, rr := range r.Extra {
		name := strings.ToLower(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.A:
			addrs[name] = append(addrs[name], rr.A)
		case *dns.TXT:
			txts[name] = append(txts[name], rr.Txt...)
		}
	}
	var common txtData
	if len(srvs) > 0 {
		if tr, err := s.exchange(ctx, s.spec.name, dns.TypeTXT); err == nil {
			if d, ok := parseTXT(txtOf(tr)); ok {
				common = d
			}
		}
	}
	peers := make([]Peer, 0, len(srvs))
	for _, srv := range srvs {
		target := strings.ToLower(srv.Target)
		if _, ok := addrs[target]; !ok {
			if ar, err := s.exchange(ctx, target, dns.TypeA); err == nil {
				for _, rr := range ar.Answer {
					if a, ok := rr.(*dns.A); ok {
						addrs[target] = append(addrs[target], a.A)
					}
				}
			}
		}
		if _, ok := txts[target]; !ok {
			if tr, err := s.exchange(ctx, target, dns.TypeTXT); err == nil {
				txts[target] = txtOf(tr)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if p, ok := s.peer(srv, common, addrs[target], txts[target]); ok {
			peers = append(peers, p)
		}
	}
	s.w.replace(s.id, peers, false, at)
}

func txtOf(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, t.Txt...)
		}
	}
	return out
}

// peer builds the peer of one SRV record.
func (s *srvSource) peer(srv *dns.SRV, common txtData, addrs []net.IP, txt []string) (Peer, bool) {
	d := common
	if own, ok := parseTXT(txt); ok {
		if own.node != "" {
			d.node = own.node
		}
		if own.typ != "" {
			d.typ = own.typ
		}
		if len(own.endpoints) > 0 {
			d.endpoints = own.endpoints
		}
		if len(own.meta) > 0 {
			merged := make(map[string]string, len(d.meta)+len(own.meta))
			for k, v := range d.meta {
				merged[k] = v
			}
			for k, v := range own.meta {
				merged[k] = v
			}
			d.meta = merged
		}
	}
	if d.typ == "" {
		d.typ = s.spec.socketType
	}
	target := strings.TrimSuffix(strings.ToLower(srv.Target), ".")
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].String() < addrs[j].String() })
	var ip net.IP
	host := target
	if len(addrs) > 0 {
		ip = addrs[0]
		host = ip.String()
	}
	var eps []string
	for _, ep := range d.endpoints {
		if wildcardHost(ep) {
			if ip == nil {
				continue
			}
			ep = resolveEndpoint(ep, ip)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		if srv.Port == 0 {
			return Peer{}, false
		}
		eps = []string{"tcp://" + net.JoinHostPort(host, strconv.Itoa(int(srv.Port)))}
	}
	return Peer{
		Key:       "srv:" + target + ":" + strconv.Itoa(int(srv.Port)),
		Source:    "srv",
		Node:      d.node,
		Service:   s.w.service,
		Instance:  target,
		Type:      d.typ,
		Endpoints: eps,
		Meta:      d.meta,
		Curve:     d.curve,
	}, true
}
