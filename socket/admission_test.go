package socket

import (
	"errors"
	"net"
	"testing"
)

// fakeConn is a net.Conn with a chosen remote address that records Close.
type fakeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

func tcpConn(ip string) *fakeConn {
	return &fakeConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

// TestAdmission: the per-source and total limits on handshakes in
// progress, and who gives way when the total is reached.
func TestAdmission(t *testing.T) {
	var a admission
	admit := func(c net.Conn) *hsSlot {
		sl, _ := a.admit(c, 3, 6)
		return sl
	}
	// Source A takes its three slots; a fourth is shed.
	var aSlots []*hsSlot
	for range 3 {
		aSlots = append(aSlots, admit(tcpConn("10.0.0.1")))
	}
	if admit(tcpConn("10.0.0.1")) != nil || a.shed.Load() != 1 {
		t.Fatalf("a fourth handshake from one source was admitted (shed %d)", a.shed.Load())
	}
	// IPv6 addresses count per /64; IPv4-mapped ones as IPv4.
	b1 := admit(tcpConn("2001:db8::1"))
	admit(tcpConn("2001:db8::2:3"))
	if admit(tcpConn("::ffff:10.0.0.1")) != nil {
		t.Fatal("an IPv4-mapped address escaped its IPv4 source's limit")
	}
	admit(tcpConn("2001:db8:0:1::1")) // another /64
	if a.inProgress() != 6 {
		t.Fatalf("%d in progress, want 6", a.inProgress())
	}
	// Full. A newcomer from a source holding 2 does not evict from the
	// one holding 3 (no churn between near equals), but a fresh source
	// evicts the busiest source's oldest handshake.
	if admit(tcpConn("2001:db8::9")) != nil {
		t.Fatal("a source holding 2 handshakes took a slot from one holding 3")
	}
	fresh := tcpConn("192.0.2.7")
	if admit(fresh) == nil {
		t.Fatal("a fresh source was locked out of a full table")
	}
	if old := aSlots[0].c.(*fakeConn); !old.closed || aSlots[1].c.(*fakeConn).closed {
		t.Fatal("the busiest source's oldest handshake was not the one closed")
	}
	if a.inProgress() != 6 {
		t.Fatalf("%d in progress after an eviction, want 6", a.inProgress())
	}
	// The evicted handshake's end gives back nothing; others' do.
	a.release(aSlots[0])
	a.release(b1)
	if a.inProgress() != 5 {
		t.Fatalf("%d in progress, want 5", a.inProgress())
	}
	if admit(tcpConn("2001:db8::9")) == nil {
		t.Fatal("a slot given back was not reused")
	}
	// Connections without an IP address count toward the total only.
	for range 3 {
		a.release(admit(tcpConn("192.0.2.99")))
	}
	unix := &fakeConn{remote: &net.UnixAddr{Name: "@", Net: "unix"}}
	if _, ok := a.admit(unix, 3, 100); !ok {
		t.Fatal("an ipc connection was refused under the total")
	}
}

// TestWithHandshakeLimits: the option's bounds.
func TestWithHandshakeLimits(t *testing.T) {
	for _, c := range []struct{ per, total int }{{0, 10}, {5, 4}, {-1, -1}} {
		if _, err := New(PULL, WithHandshakeLimits(c.per, c.total)); !errors.Is(err, ErrOption) {
			t.Errorf("WithHandshakeLimits(%d, %d): %v, want ErrOption", c.per, c.total, err)
		}
	}
	s := newSock(t, PULL, WithHandshakeLimits(1, 1))
	if s.opts.MaxPerSource != 1 || s.opts.MaxHandshakes != 1 {
		t.Fatalf("limits %d/%d", s.opts.MaxPerSource, s.opts.MaxHandshakes)
	}
	d := DefaultOptions()
	if d.MaxPerSource != DefaultHandshakesPerSource || d.MaxHandshakes != DefaultHandshakes {
		t.Fatalf("defaults %d/%d", d.MaxPerSource, d.MaxHandshakes)
	}
}
