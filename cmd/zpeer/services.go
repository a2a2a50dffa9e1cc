package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// browseServices asks, over mDNS, which DNS-SD service types are announced
// (the "_services._dns-sd._udp.local." meta-query of RFC 6763 section 9)
// and returns their names ("jobs" for "_jobs._tcp"). It is how "zpeer
// peers" without --service finds what to watch: package discovery watches
// one named service at a time.
//
// The query goes out from an ephemeral port, so responders answer it by
// unicast (RFC 6762 section 6.7, "legacy unicast"), on the interfaces
// --iface names ("lo": the loopback interface only), or else on every
// interface that is up, multicast-capable and has an IPv4 address. It asks
// three times within wait and returns what answered.
func browseServices(ctx context.Context, ifaces []string, wait time.Duration) ([]string, error) {
	ifis, err := mdnsInterfaces(ifaces)
	if err != nil {
		return nil, err
	}
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, fmt.Errorf("mDNS query socket: %w", err)
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
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
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

// mdnsInterfaces picks the interfaces as package discovery does.
func mdnsInterfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		var out []net.Interface
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, usagef("--iface %s: %v", n, err)
			}
			out = append(out, *ifi)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				out = append(out, ifi)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no interface is up, multicast-capable and has an IPv4 address (--iface lo for this machine)")
	}
	return out, nil
}
