package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// proxyOpts are the flags of zpeer proxy.
type proxyOpts struct {
	typ         string
	front, back proxySide
	capture     string
	control     string
	ifaces      []string
	name        string
	verbose     bool
	metrics     string
}

// proxySide is how one side of the proxy reaches its peers.
type proxySide struct {
	name     string // frontend or backend
	binds    []string
	connects []string
	discover string
}

// proxyTypes are the devices: the frontend's and the backend's socket type.
var proxyTypes = map[string][2]socket.Type{
	"pubsub":   {socket.XSUB, socket.XPUB},
	"queue":    {socket.ROUTER, socket.DEALER},
	"pipeline": {socket.PULL, socket.PUSH},
}

func (a *app) proxyCommand() *cobra.Command {
	o := &proxyOpts{front: proxySide{name: "frontend"}, back: proxySide{name: "backend"}}
	cmd := &cobra.Command{
		Use:   "proxy --type pubsub|queue|pipeline [flags]",
		Short: "Forward between two groups of peers (pub/sub forwarder, request queue, pipeline streamer)",
		Long: `proxy joins two groups of peers, as libzmq's zmq_proxy does:

  pubsub    frontend XSUB facing the publishers, backend XPUB facing the
            subscribers; subscriptions go up, publications down
  queue     frontend ROUTER facing the requesters (req, dealer), backend
            DEALER facing the repliers (rep, router)
  pipeline  frontend PULL facing the pushers, backend PUSH facing the pullers

Each side binds (--frontend-bind, repeatable), connects (--frontend-connect,
repeatable) or finds its peers over mDNS (--frontend-discover SERVICE: it
announces the side's bound endpoints, or connects to the peers it sees when
the side binds nothing); likewise --backend-*. So a proxy with mDNS on one
side and a connect across a router on the other joins two LANs.

Subscriptions survive restarts on both sides: subscribers re-send theirs when
they reconnect, and every publisher that (re)connects gets the union of them.
A subscriber that falls behind loses messages (counted), never holds up the
others. --capture EP publishes a copy of all traffic (raw frames) on a PUB
socket bound at EP; --control EP takes libzmq's PAUSE, RESUME, TERMINATE and
STATISTICS commands on a REP socket bound at EP.

It prints "bound ENDPOINT" on standard error for each bind, a status line of
its counters on a terminal, and its counters when it exits (Ctrl-C).`,
		Example: `  # publishers connect to :5550, subscribers to :5551
  zpeer proxy --type pubsub --frontend-bind 'tcp://*:5550' --backend-bind 'tcp://*:5551'

  # the publishers of this LAN (mDNS service weather) to subscribers across a router
  zpeer proxy --type pubsub --frontend-discover weather --backend-bind 'tcp://*:5551'

  # a request queue with a capture of the traffic
  zpeer proxy --type queue --frontend-bind tcp://127.0.0.1:5555 \
      --backend-bind tcp://127.0.0.1:5556 --capture tcp://127.0.0.1:5557`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return a.runProxy(cmd.Context(), o)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.typ, "type", "", "the device: `TYPE` pubsub, queue or pipeline")
	for _, sd := range []*proxySide{&o.front, &o.back} {
		f.StringArrayVar(&sd.binds, sd.name+"-bind", nil, "listen on `EP` for the "+sd.name+"'s peers; repeatable")
		f.StringArrayVar(&sd.connects, sd.name+"-connect", nil, "connect to the "+sd.name+" peer at `EP`; repeatable")
		f.StringVar(&sd.discover, sd.name+"-discover", "", "announce the "+sd.name+"'s bound endpoints as, or connect to the peers of, mDNS `SERVICE`")
	}
	f.StringVar(&o.capture, "capture", "", "publish a copy of all traffic on a PUB socket bound at `EP`")
	f.StringVar(&o.control, "control", "", "take PAUSE, RESUME, TERMINATE and STATISTICS on a REP socket bound at `EP`")
	f.StringArrayVar(&o.ifaces, "iface", nil, "network interface `NAME` for --*-discover (lo: this machine only); repeatable")
	f.StringVar(&o.name, "name", "", "node `NAME` announced with --*-discover (default HOST-PID)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log connections on standard error")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics while the proxy runs (host:port; :0 picks a port)")
	return cmd
}

func (o *proxyOpts) validate() error {
	if _, ok := proxyTypes[o.typ]; !ok {
		return usagef("--type must be pubsub, queue or pipeline (got %q)", o.typ)
	}
	if o.name == "" {
		o.name = defaultName()
	}
	for _, sd := range []*proxySide{&o.front, &o.back} {
		if len(sd.binds) == 0 && len(sd.connects) == 0 && sd.discover == "" {
			return usagef("the %s needs --%s-bind, --%s-connect or --%s-discover", sd.name, sd.name, sd.name, sd.name)
		}
		if sd.discover != "" {
			if _, err := discovery.ServiceType(sd.discover); err != nil {
				return usageError{err}
			}
		}
	}
	if len(o.ifaces) > 0 && o.front.discover == "" && o.back.discover == "" {
		return usagef("--iface needs --frontend-discover or --backend-discover")
	}
	return nil
}

// proxyRun is one run of zpeer proxy: its sockets and what discovery runs.
type proxyRun struct {
	a       *app
	o       *proxyOpts
	px      *socket.Proxy
	socks   []*socket.Socket
	closers []io.Closer
	wg      sync.WaitGroup
	start   time.Time
}

func (a *app) runProxy(ctx context.Context, o *proxyOpts) (err error) {
	r := &proxyRun{a: a, o: o, start: time.Now()}
	defer func() {
		r.close()
		if in, ok := errInterrupted(ctx); ok {
			a.errorf("zpeer: %s: %s", in, r.statusText())
			err = reported{in}
		} else if o.verbose || err == nil {
			a.errorf("zpeer: %s", r.statusText())
		}
	}()
	types := proxyTypes[o.typ]
	front, err := r.side(ctx, &o.front, types[0])
	if err != nil {
		return err
	}
	back, err := r.side(ctx, &o.back, types[1])
	if err != nil {
		return err
	}
	var popts []socket.ProxyOption
	if o.capture != "" {
		c, err := r.bound(socket.PUB, o.capture)
		if err != nil {
			return err
		}
		popts = append(popts, socket.WithCapture(c))
	}
	if o.control != "" {
		c, err := r.bound(socket.REP, o.control)
		if err != nil {
			return err
		}
		popts = append(popts, socket.WithControl(c))
	}
	if r.px, err = socket.NewProxy(front, back, popts...); err != nil {
		return err
	}
	ms, err := a.serveMetrics(o.metrics)
	if err != nil {
		return err
	}
	defer ms.Close()
	if c := ms.collector(); c != nil {
		c.AddSocket("frontend", front)
		c.AddSocket("backend", back)
	}
	status := startStatus(a.stderr, &a.errMu, 250*time.Millisecond, r.statusText)
	defer status.Stop()
	err = r.px.Run(ctx)
	if ctx.Err() != nil {
		return nil // interrupted: reported by the deferred summary
	}
	return err
}

// newSocket makes one of the proxy's sockets.
func (r *proxyRun) newSocket(t socket.Type) (*socket.Socket, error) {
	opts := []socket.Option{
		socket.WithLinger(0),
		socket.WithReconnect(50*time.Millisecond, 2*time.Second),
	}
	if r.o.verbose {
		opts = append(opts, socket.WithEventHandler(func(ev socket.Event) {
			switch ev.Kind {
			case socket.EventConnected:
				r.a.errorf("zpeer: %s connected %s (%s peer %s)", t, ev.Endpoint, ev.PeerType, ev.Remote)
			case socket.EventDisconnected:
				r.a.errorf("zpeer: %s disconnected %s (%s peer %s): %v", t, ev.Endpoint, ev.PeerType, ev.Remote, ev.Err)
			case socket.EventRejected:
				r.a.errorf("zpeer: %s rejected %s %s: %v", t, ev.Endpoint, ev.Remote, ev.Err)
			}
		}))
	}
	switch t {
	case socket.XPUB:
		// Every subscribe goes up, so that a last-value cache upstream
		// answers each new subscriber.
		opts = append(opts, socket.WithXPubVerbose(false))
	case socket.ROUTER, socket.PUB:
		// A requester (or capture reader) that does not read loses its
		// replies, counted; it never holds up the others.
		opts = append(opts, socket.WithNoBlock())
	}
	s, err := socket.New(t, opts...)
	if err != nil {
		return nil, err
	}
	r.socks = append(r.socks, s)
	return s, nil
}

// bound makes a socket bound at ep (capture, control).
func (r *proxyRun) bound(t socket.Type, ep string) (*socket.Socket, error) {
	s, err := r.newSocket(t)
	if err != nil {
		return nil, err
	}
	real, err := s.Bind(ep)
	if err != nil {
		return nil, err
	}
	r.a.errorf("bound %s", real)
	return s, nil
}

// side makes one side's socket: binds, connects and discovery.
func (r *proxyRun) side(ctx context.Context, sd *proxySide, t socket.Type) (*socket.Socket, error) {
	s, err := r.newSocket(t)
	if err != nil {
		return nil, err
	}
	var bound []string
	for _, ep := range sd.binds {
		real, err := s.Bind(ep)
		if err != nil {
			return nil, err
		}
		bound = append(bound, real)
		r.a.errorf("bound %s", real)
	}
	for _, ep := range sd.connects {
		if err := s.Connect(ep); err != nil {
			return nil, err
		}
	}
	if sd.discover == "" {
		return s, nil
	}
	opts := discoveryOptions(r.o.ifaces)
	if len(bound) > 0 {
		ann, err := discovery.Announce(sd.discover, t.String(), bound,
			append(opts, discovery.WithMeta(map[string]string{"name": r.o.name}))...)
		if err != nil {
			return nil, discoveryError(err)
		}
		r.closers = append(r.closers, ann)
		return s, nil
	}
	w, err := discovery.NewWatcher(sd.discover, opts...)
	if err != nil {
		return nil, discoveryError(err)
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		discovery.AutoConnect(actx, w, s, t.String())
	}()
	r.closers = append(r.closers, closerFunc(func() error {
		cancel()
		r.wg.Wait()
		return w.Close()
	}))
	return s, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// close closes the sockets (the proxy has stopped), then discovery.
func (r *proxyRun) close() {
	for _, s := range r.socks {
		s.Close()
	}
	for _, c := range r.closers {
		c.Close()
	}
}

// statusText is the proxy's counters in one line.
func (r *proxyRun) statusText() string {
	if r.px == nil {
		return "proxy " + r.o.typ + ": not started"
	}
	st := r.px.Stats()
	peers := func(i int) int {
		if i < len(r.socks) {
			return r.socks[i].Peers()
		}
		return 0
	}
	line := fmt.Sprintf("proxy %s: frontend %d peers, %d in, %d out; backend %d peers, %d in, %d out",
		r.o.typ, peers(0), st.Frontend.MsgsIn, st.Frontend.MsgsOut, peers(1), st.Backend.MsgsIn, st.Backend.MsgsOut)
	if r.o.typ == "pubsub" {
		line += fmt.Sprintf("; subscriptions %d, cancels %d, drops %d", st.Subscriptions, st.Unsubscriptions, r.socks[1].Stats().Drops)
	}
	if st.Dropped > 0 {
		line += fmt.Sprintf("; undeliverable %d", st.Dropped)
	}
	if r.o.capture != "" {
		line += fmt.Sprintf("; capture drops %d", st.CaptureDropped)
	}
	if st.BadCommands > 0 {
		line += fmt.Sprintf("; bad control commands %d", st.BadCommands)
	}
	if st.Paused {
		line += " (paused)"
	}
	return line
}
