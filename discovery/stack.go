package discovery

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// The process's mDNS stack. Every Announcer and every Watcher of the
// process shares one UDP socket per interface: the first user of an
// interface opens it, the last one closes it (reference counting under
// stack.mu). One goroutine per socket reads packets, parses each one once
// (unpackMDNS: the one DNS message codec), and hands it to the users of
// that interface: queries to Announcers (to answer), responses to Watchers
// (to track). A handler never blocks the reader: each user has a bounded
// queue and drops (and counts) what does not fit.

// packet is one parsed mDNS message as it reached a user. msg is shared by
// every user the packet went to: it is read only.
type packet struct {
	msg     *dns.Msg
	ifIndex int
	src     *net.UDPAddr
	at      time.Time // when it was read
}

// handler takes a packet without blocking and reports whether it kept it
// (false: its queue was full and it dropped the packet).
type handler func(packet) bool

// user is an Announcer or a Watcher attached to the stack. A nil handler
// means no interest in that kind of packet.
type user struct {
	onQuery    handler
	onResponse handler
}

// stackT is the process's set of mDNS sockets, by interface index.
type stackT struct {
	mu  sync.Mutex
	ifs map[int]*ifconn // guarded by mu

	packetsIn  atomic.Uint64
	packetsOut atomic.Uint64
	sendErrors atomic.Uint64
	malformed  atomic.Uint64
	queueDrops atomic.Uint64
}

var stack = &stackT{ifs: make(map[int]*ifconn)}

// ifconn is the mDNS socket of one interface: UDP port 5353 shared with
// other responders (SO_REUSEADDR), joined to 224.0.0.251 on that interface
// only. On Linux IP_MULTICAST_ALL is off, so that the kernel does not hand
// it groups that other sockets joined on other interfaces; packets that
// still arrive from another interface are dropped. It sends on its
// interface only.
type ifconn struct {
	ifi  net.Interface
	pc   *ipv4.PacketConn
	refs int           // guarded by stack.mu
	done chan struct{} // closed when the reader has returned

	mu    sync.RWMutex // held shared while dispatching, so detach waits for it
	users []*user      // guarded by mu; replaced, never modified
}

// link is one user's attachment to the stack: the sockets of its
// interfaces. detach undoes it.
type link struct {
	u      *user
	conns  []*ifconn
	byIdx  map[int]*ifconn
	detach func() // idempotent; after it returns no handler of u runs
}

// attach gives u the sockets of ifaces, opening those that no other user
// holds. Interfaces whose socket cannot be opened are skipped; it fails
// with ErrNoInterface when none can.
func (s *stackT) attach(ifaces []net.Interface, u *user) (*link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &link{u: u, byIdx: make(map[int]*ifconn)}
	var errs []error
	for _, ifi := range ifaces {
		if l.byIdx[ifi.Index] != nil {
			continue
		}
		c := s.ifs[ifi.Index]
		if c == nil {
			var err error
			if c, err = openIfconn(ifi); err != nil {
				errs = append(errs, err)
				continue
			}
			s.ifs[ifi.Index] = c
			go c.read(s)
		}
		c.refs++
		c.mu.Lock()
		c.users = append(append(make([]*user, 0, len(c.users)+1), c.users...), u)
		c.mu.Unlock()
		l.conns = append(l.conns, c)
		l.byIdx[ifi.Index] = c
	}
	if len(l.conns) == 0 {
		return nil, fmt.Errorf("%w: cannot open an mDNS socket: %v", ErrNoInterface, errors.Join(errs...))
	}
	var once sync.Once
	l.detach = func() { once.Do(func() { s.detach(l) }) }
	return l, nil
}

func (s *stackT) detach(l *link) {
	var closing []*ifconn
	s.mu.Lock()
	for _, c := range l.conns {
		c.mu.Lock()
		users := make([]*user, 0, len(c.users))
		for _, u := range c.users {
			if u != l.u {
				users = append(users, u)
			}
		}
		c.users = users
		c.mu.Unlock()
		if c.refs--; c.refs == 0 {
			delete(s.ifs, c.ifi.Index)
			closing = append(closing, c)
		}
	}
	s.mu.Unlock()
	for _, c := range closing {
		c.pc.Close()
		<-c.done
	}
}

// sockets returns how many mDNS sockets are open.
func (s *stackT) sockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ifs)
}

func openIfconn(ifi net.Interface) (*ifconn, error) {
	// Go binds a multicast listen address as the wildcard address with
	// SO_REUSEADDR, so other responders on the host share the port.
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: mdnsGroup, Port: mdnsPort})
	if err != nil {
		return nil, fmt.Errorf("%s: listen on the mDNS port: %w", ifi.Name, err)
	}
	fail := func(err error) (*ifconn, error) {
		uc.Close()
		return nil, fmt.Errorf("%s: mDNS socket: %w", ifi.Name, err)
	}
	if err := restrictMulticast(uc); err != nil {
		return fail(err)
	}
	// Every user of the interface reads through this one socket: give
	// bursts (many peers starting at once) room while the reader catches
	// up. The kernel caps it at net.core.rmem_max; less is no error.
	_ = uc.SetReadBuffer(1 << 20)
	pc := ipv4.NewPacketConn(uc)
	if err := pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		return fail(err)
	}
	_ = pc.SetMulticastTTL(255) // RFC 6762 section 11
	_ = pc.SetMulticastLoopback(true)
	if err := pc.JoinGroup(&ifi, &net.UDPAddr{IP: mdnsGroup}); err != nil {
		return fail(err)
	}
	return &ifconn{ifi: ifi, pc: pc, done: make(chan struct{})}, nil
}

// read reads, parses and dispatches packets until the socket is closed.
func (c *ifconn) read(s *stackT) {
	defer close(c.done)
	buf := make([]byte, 9000)
	for {
		n, cm, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			if isClosedErr(err) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a transient error: do not spin
			continue
		}
		if cm == nil || cm.IfIndex != c.ifi.Index {
			continue // another interface's packet
		}
		at := time.Now()
		s.packetsIn.Add(1)
		if n < 12 {
			s.malformed.Add(1)
			continue
		}
		response := buf[2]&0x80 != 0
		c.mu.RLock()
		c.dispatch(s, buf[:n], response, from, at)
		c.mu.RUnlock()
	}
}

// dispatch parses b, if any user wants it, and hands it to them. c.mu is
// held shared.
func (c *ifconn) dispatch(s *stackT, b []byte, response bool, from net.Addr, at time.Time) {
	wanted := false
	for _, u := range c.users {
		if (response && u.onResponse != nil) || (!response && u.onQuery != nil) {
			wanted = true
			break
		}
	}
	if !wanted {
		return
	}
	m, err := unpackMDNS(b)
	if err != nil {
		s.malformed.Add(1)
		return
	}
	p := packet{msg: m, ifIndex: c.ifi.Index, at: at}
	p.src, _ = from.(*net.UDPAddr)
	for _, u := range c.users {
		h := u.onQuery
		if response {
			h = u.onResponse
		}
		if h != nil && !h(p) {
			s.queueDrops.Add(1)
		}
	}
}

// send writes b to dst through interface ifIndex.
func (l *link) send(b []byte, ifIndex int, dst *net.UDPAddr) error {
	c := l.byIdx[ifIndex]
	if c == nil {
		return fmt.Errorf("discovery: interface %d not selected", ifIndex)
	}
	_, err := c.pc.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifIndex}, dst)
	if err != nil {
		stack.sendErrors.Add(1)
		return fmt.Errorf("discovery: send on %s to %v: %w", c.ifi.Name, dst, err)
	}
	stack.packetsOut.Add(1)
	return nil
}

var mdnsGroupAddr = &net.UDPAddr{IP: mdnsGroup, Port: mdnsPort}

// multicast sends b to the mDNS group on one interface.
func (l *link) multicast(b []byte, ifIndex int) error { return l.send(b, ifIndex, mdnsGroupAddr) }

// ifaces returns the interfaces whose socket the user holds.
func (l *link) ifaces() []net.Interface {
	out := make([]net.Interface, len(l.conns))
	for i, c := range l.conns {
		out[i] = c.ifi
	}
	return out
}

// StackStats returns the counters of the process's shared mDNS stack since
// the process started: PacketsIn (packets read on selected interfaces),
// PacketsOut, SendErrors, Malformed (packets that did not parse),
// QueueDrops (packets an Announcer's or Watcher's full queue dropped), and
// Sockets, the mDNS sockets open now: one per interface that some
// Announcer or Watcher of the process uses.
func StackStats() Stats {
	return Stats{
		PacketsIn:  stack.packetsIn.Load(),
		PacketsOut: stack.packetsOut.Load(),
		SendErrors: stack.sendErrors.Load(),
		Malformed:  stack.malformed.Load(),
		QueueDrops: stack.queueDrops.Load(),
		Sockets:    stack.sockets(),
	}
}
