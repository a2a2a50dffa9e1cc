package discovery

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// BrowseServices asks, over mDNS, which DNS-SD service types are announced
// on the network (the "_services._dns-sd._udp.local." meta-query of RFC
// 6763 section 9) and returns their names ("jobs" for "_jobs._tcp"), zpeer's
// and others'. A Watcher follows one named service; this is how to find the
// names to watch ("zpeer peers" without --service uses it).
//
// The query goes out from an ephemeral port, so responders answer it by
// unicast (RFC 6762 section 6.7, "legacy unicast"), on the interfaces the
// options select as for a Watcher (WithLoopback, WithInterfaces; by
// default every interface that is up, multicast-capable and has an IPv4
// address). It asks three times within wait and returns what answered by
// then, or ctx's error with what answered before ctx ended.
func BrowseServices(ctx context.Context, wait time.Duration, opts ...Option) ([]string, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	ifis, err := selectInterfaces(&o)
	if err != nil {
		return nil, err
	}
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, fmt.Errorf("discovery: mDNS query socket: %w", err)
	}
	defer uc.Close()
	pc := ipv4.NewPacketConn(uc)
	pc.SetMulticastLoopback(true)
	pc.SetMulticastTTL(255)

	q := new(dns.Msg)
	q.SetQuestion("_services._dns-sd._udp.local.", dns.TypePTR)
	q.RecursionDesired = false
	pkt, err := q.Pack()
	if err != nil {
		return nil, err
	}
	group := &net.UDPAddr{IP: mdnsGroup, Port: mdnsPort}
	send := func() {
		for _, ifi := range ifis {
			if err := pc.SetMulticastInterface(&ifi); err == nil {
				pc.WriteTo(pkt, nil, group)
			}
		}
	}

	found := make(map[string]bool)
	var names []string
	deadline := time.Now().Add(wait)
	next := time.Now()
	buf := make([]byte, 9000)
	for sent := 0; ctx.Err() == nil && time.Now().Before(deadline); {
		if sent < 3 && !time.Now().Before(next) {
			send()
			sent++
			next = time.Now().Add(wait / 4)
		}
		uc.SetReadDeadline(minTime(deadline, next))
		n, _, err := uc.ReadFromUDP(buf)
		if err != nil {
			continue // a deadline: send again or stop
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		for _, rr := range append(m.Answer, m.Extra...) {
			ptr, ok := rr.(*dns.PTR)
			if !ok || !strings.EqualFold(ptr.Hdr.Name, "_services._dns-sd._udp.local.") {
				continue
			}
			// "_jobs._tcp.local." -> "jobs"
			name, ok := strings.CutSuffix(strings.ToLower(ptr.Ptr), "._tcp.local.")
			if !ok || !strings.HasPrefix(name, "_") || found[name[1:]] {
				continue
			}
			found[name[1:]] = true
			names = append(names, name[1:])
		}
	}
	return names, ctx.Err()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
