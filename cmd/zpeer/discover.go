package main

import (
	"context"
	"errors"
	"sync"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// discoveryOptions turns --iface into discovery options: "lo" alone is the
// single-machine mode (loopback only, announcing 127.0.0.1).
func discoveryOptions(ifaces []string) []discovery.Option {
	switch {
	case len(ifaces) == 0:
		return nil
	case len(ifaces) == 1 && ifaces[0] == "lo":
		return []discovery.Option{discovery.WithLoopback()}
	}
	return []discovery.Option{discovery.WithInterfaces(ifaces...)}
}

// discoveryError classifies discovery's errors: a bad service name or
// interface is the user's to fix.
func discoveryError(err error) error {
	if errors.Is(err, discovery.ErrInvalidService) || errors.Is(err, discovery.ErrNoInterface) ||
		errors.Is(err, discovery.ErrOption) || errors.Is(err, discovery.ErrInvalidMeta) {
		return usageError{err}
	}
	return err
}

// sessionDiscovery is --discover for one session: an announcement of the
// bound endpoints, or a watcher whose peers are connected to.
type sessionDiscovery struct {
	ann     *discovery.Announcer
	w       *discovery.Watcher
	cancel  context.CancelFunc
	done    chan struct{}
	conn    *discConnector
	closeMu sync.Once
}

func (d *sessionDiscovery) Close() error {
	d.closeMu.Do(func() {
		if d.ann != nil {
			d.ann.Close() // goodbyes
		}
		if d.cancel != nil {
			d.cancel()
			<-d.done
		}
		if d.w != nil {
			d.w.Close()
		}
	})
	return nil
}

// startDiscovery announces the bound endpoints (a binding command) or
// browses and connects to every compatible peer (a connecting one).
func (s *session) startDiscovery(ctx context.Context) error {
	opts := append(discoveryOptions(s.o.ifaces), discovery.WithLogger(s.log))
	typ := s.sc.typ.String()
	d := &sessionDiscovery{}
	if len(s.bound) > 0 {
		ann, err := discovery.Announce(s.o.discover, typ, s.bound,
			append(append(opts, discovery.WithMeta(map[string]string{"name": s.o.name})), s.o.sec.announceOptions()...)...)
		if err != nil {
			return discoveryError(err)
		}
		d.ann = ann
		if s.o.verbose {
			s.logf("announced %s %s as %s", typ, s.o.discover, ann.Instance())
		}
	} else {
		w, err := discovery.NewWatcher(s.o.discover, opts...)
		if err != nil {
			return discoveryError(err)
		}
		d.w = w
		d.conn = &discConnector{s: s, eps: make(map[string]bool)}
		actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		d.cancel, d.done = cancel, make(chan struct{})
		go func() {
			defer close(d.done)
			discovery.AutoConnect(actx, w, d.conn, typ)
		}()
	}
	s.mu.Lock()
	s.disc = d
	s.mu.Unlock()
	return nil
}

// rediscover connects a reopened socket (req's retry) to the peers
// discovery had connected the old one to.
func (s *session) rediscover() {
	s.mu.Lock()
	d, _ := s.disc.(*sessionDiscovery)
	s.mu.Unlock()
	if d != nil && d.conn != nil {
		d.conn.reconnectAll()
	}
}

// discoveryHint passes what the socket layer learns to the watcher: a
// connection up means the peer is alive, one lost means it may be gone.
func (s *session) discoveryHint(ev socket.Event) {
	s.mu.Lock()
	d, _ := s.disc.(*sessionDiscovery)
	s.mu.Unlock()
	if d == nil || d.w == nil || !d.conn.has(ev.Endpoint) {
		return
	}
	switch ev.Kind {
	case socket.EventConnected:
		d.w.Touch(ev.Endpoint)
	case socket.EventDisconnected:
		d.w.ReportUnreachable(ev.Endpoint)
	}
}

// discConnector is what AutoConnect drives: the session's current socket,
// with the endpoints remembered so that a reopened socket gets them too.
type discConnector struct {
	s   *session
	mu  sync.Mutex
	eps map[string]bool
}

func (c *discConnector) Connect(ep string) error {
	c.mu.Lock()
	c.eps[ep] = true
	c.mu.Unlock()
	if c.s.o.verbose {
		c.s.logf("discovered %s", ep)
	}
	if sock := c.s.socket(); sock != nil {
		if err := sock.Connect(ep); err != nil && !errors.Is(err, socket.ErrEndpoint) {
			return err
		}
	}
	return nil
}

func (c *discConnector) Disconnect(ep string) error {
	c.mu.Lock()
	delete(c.eps, ep)
	c.mu.Unlock()
	if sock := c.s.socket(); sock != nil {
		return sock.Disconnect(ep)
	}
	return nil
}

func (c *discConnector) has(ep string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eps[ep]
}

func (c *discConnector) reconnectAll() {
	c.mu.Lock()
	eps := make([]string, 0, len(c.eps))
	for ep := range c.eps {
		eps = append(eps, ep)
	}
	c.mu.Unlock()
	if sock := c.s.socket(); sock != nil {
		for _, ep := range eps {
			if ep != c.s.deferred {
				sock.Connect(ep)
			}
		}
	}
}
