package socket

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Handshake admission: an accepted connection costs nothing until it sends
// its first byte, but a CURVE HELLO costs the server two Curve25519
// operations, and every handshake a goroutine and its buffers until it
// ends or its deadline (HandshakeTimeout) passes. So the handshakes in
// progress on accepted connections are bounded, in total and per source
// address, and a connection over a bound is closed as it is accepted,
// before it is read from: it never reaches any Curve25519 work.
//
// A flood from few sources meets the per-source bound. One from many
// sources may fill the total; then a newcomer from a source holding fewer
// handshakes than the source holding the most takes that source's oldest
// slot (its connection is closed), so a flood cannot lock out a client
// from an address of its own. A source is an IPv4 address or an IPv6 /64
// (what one host commonly holds); connections without an IP address
// (ipc://) count toward the total only.

// Default handshake limits (WithHandshakeLimits).
const (
	DefaultHandshakesPerSource = 32
	DefaultHandshakes          = 256
)

// admission tracks the handshakes in progress on a socket's accepted
// connections.
type admission struct {
	mu      sync.Mutex // guards everything below
	total   int
	sources map[netip.Addr][]*hsSlot // the slots of each source, oldest first

	shed     atomic.Uint64 // connections closed unread: over a limit, or evicted
	lastWarn atomic.Int64  // unix nanos of the last "shedding" log line
}

// hsSlot is one admitted handshake.
type hsSlot struct {
	c       net.Conn
	src     netip.Addr
	counted bool // holds a place in the counts (false once released or evicted)
}

// sourceOf is the address a connection's handshakes are counted under.
func sourceOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// admit takes a slot for the handshake on c, or reports false when c is
// over a limit (the caller closes it). It may close the connection of an
// older handshake to make room (see above).
func (a *admission) admit(c net.Conn, perSource, total int) (*hsSlot, bool) {
	src := sourceOf(c.RemoteAddr())
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sources == nil {
		a.sources = make(map[netip.Addr][]*hsSlot)
	}
	mine := len(a.sources[src])
	if src.IsValid() && mine >= perSource {
		a.shed.Add(1)
		return nil, false
	}
	if a.total >= total {
		// Evict from the source that holds the most, if it holds more
		// than this one would: floods give way, never a lone client.
		var big netip.Addr
		most := 0
		for s, slots := range a.sources {
			if s.IsValid() && len(slots) > most {
				big, most = s, len(slots)
			}
		}
		if most <= mine+1 {
			a.shed.Add(1)
			return nil, false
		}
		old := a.sources[big][0]
		a.dropLocked(old)
		old.c.Close() // its handshake fails on its next read or write
		a.shed.Add(1)
	}
	sl := &hsSlot{c: c, src: src, counted: true}
	a.sources[src] = append(a.sources[src], sl)
	a.total++
	return sl, true
}

// release gives back sl's slot when its handshake ends.
func (a *admission) release(sl *hsSlot) {
	a.mu.Lock()
	if sl.counted {
		a.dropLocked(sl)
	}
	a.mu.Unlock()
}

func (a *admission) dropLocked(sl *hsSlot) {
	slots := a.sources[sl.src]
	for i, x := range slots {
		if x == sl {
			slots = append(slots[:i], slots[i+1:]...)
			break
		}
	}
	if len(slots) == 0 {
		delete(a.sources, sl.src)
	} else {
		a.sources[sl.src] = slots
	}
	sl.counted = false
	a.total--
}

// inProgress is the number of handshakes admitted and not yet ended.
func (a *admission) inProgress() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// shouldWarn reports whether it is time for another "shedding" log line
// (at most one per 10 seconds: a flood must not flood the log too).
func (a *admission) shouldWarn(now time.Time) bool {
	last := a.lastWarn.Load()
	return now.UnixNano()-last >= int64(10*time.Second) && a.lastWarn.CompareAndSwap(last, now.UnixNano())
}
