// Package faultnet impairs TCP links for tests, in user space: a Proxy
// listens on 127.0.0.1 and forwards every connection to a target, adding
// delay, loss, stalls and cuts on a schedule the test sets. It stands in for
// netem (tc qdisc ... netem), which the kernels zpeer is tested on lack.
//
// TCP never loses bytes, so loss is modelled as what a lost segment costs a
// TCP stream: the chunk it was in, and everything behind it, arrives one
// retransmission timeout late. A cut closes every connection and refuses new
// ones (the peer sees a reset or EOF, as after a link failure noticed by a
// keepalive); a stall holds bytes without closing anything (a link that is
// down but not yet noticed).
//
// It is a test tool, not for production code.
package faultnet

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its own address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex // guards everything below
	delay   time.Duration
	loss    float64
	rto     time.Duration
	cut     bool
	stalled chan struct{} // closed while bytes flow; open while stalled
	conns   map[*link]struct{}
	closed  bool
	wg      sync.WaitGroup

	// Counters, guarded by mu.
	accepted, refused, lost int
}

// link is one proxied connection: the accepted side and the dialled side.
type link struct {
	a, b  net.Conn
	once  sync.Once
	pumps int // directions still running, guarded by Proxy.mu
}

func (l *link) close() {
	l.once.Do(func() {
		l.a.Close()
		l.b.Close()
	})
}

// New starts a proxy on 127.0.0.1 (a free port) to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, rto: 200 * time.Millisecond, stalled: make(chan struct{}), conns: map[*link]struct{}{}}
	close(p.stalled) // flowing
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Endpoint is the proxy's address as a ZeroMQ endpoint.
func (p *Proxy) Endpoint() string { return "tcp://" + p.Addr() }

// SetDelay sets the one-way delay added to every chunk, both ways.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetLoss makes each chunk "lost" with probability rate: it arrives, with
// what follows it, rto late (the cost of a TCP retransmission).
func (p *Proxy) SetLoss(rate float64, rto time.Duration) {
	p.mu.Lock()
	p.loss, p.rto = rate, rto
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	ls := p.linksLocked()
	p.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
}

// Restore ends a cut or a stall.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	select {
	case <-p.stalled:
	default:
		close(p.stalled)
	}
	p.mu.Unlock()
}

// Stall holds every byte in flight, both ways, until Restore; connections
// stay open.
func (p *Proxy) Stall() {
	p.mu.Lock()
	select {
	case <-p.stalled:
		p.stalled = make(chan struct{})
	default:
	}
	p.mu.Unlock()
}

// Stats are the proxy's counters.
type Stats struct {
	Accepted, Refused, Lost, Open int
}

// Stats returns the counters: connections accepted and refused (during a
// cut), chunks "lost", connections open now.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Accepted: p.accepted, Refused: p.refused, Lost: p.lost, Open: len(p.conns)}
}

// Close stops the proxy, closes its connections and waits for its
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ls := p.linksLocked()
	select {
	case <-p.stalled:
	default:
		close(p.stalled)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range ls {
		l.close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) linksLocked() []*link {
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
	}
	return ls
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		d, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{a: c, b: d}
		p.mu.Lock()
		if p.cut || p.closed {
			p.refused++
			p.mu.Unlock()
			l.close()
			continue
		}
		p.accepted++
		p.conns[l] = struct{}{}
		l.pumps = 2
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(l, l.a, l.b)
		go p.pump(l, l.b, l.a)
	}
}

// chunk is bytes read at one time, due for writing at a later one.
type chunk struct {
	buf []byte
	due time.Time
}

// pump forwards src to dst through a bounded queue of delayed chunks. A
// failure either way ends the link.
func (p *Proxy) pump(l *link, src, dst net.Conn) {
	defer p.wg.Done()
	q := make(chan chunk, 64) // bounded: a slow dst back-pressures src
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			if wait := time.Until(c.due); wait > 0 {
				time.Sleep(wait)
			}
			p.waitFlowing()
			if _, err := dst.Write(c.buf); err != nil {
				l.close()
				for range q {
				}
				return
			}
		}
	}()
	var last time.Time // chunks keep their order: none is due before the one ahead
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.waitFlowing()
			p.mu.Lock()
			due := time.Now().Add(p.delay)
			if p.loss > 0 && rand.Float64() < p.loss {
				due = due.Add(p.rto)
				p.lost++
			}
			p.mu.Unlock()
			if due.Before(last) {
				due = last
			}
			last = due
			q <- chunk{buf: buf[:n], due: due}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.close()
			}
			break
		}
	}
	close(q)
	<-done
	// Half-close: pass the EOF on, let the other way finish.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	p.mu.Lock()
	l.pumps--
	both := l.pumps == 0
	if both {
		delete(p.conns, l)
	}
	p.mu.Unlock()
	if both {
		l.close()
	}
}

func (p *Proxy) waitFlowing() {
	p.mu.Lock()
	ch := p.stalled
	p.mu.Unlock()
	<-ch
}
