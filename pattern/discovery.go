package pattern

import (
	"context"
	"fmt"
	"sync"

	"github.com/zpeer/zpeer/discovery"
)

// Connector is the part of a pattern that a discovery service drives: it
// connects to peers as they appear and disconnects from them as they leave.
// Every pattern satisfies it, as does *socket.Socket. It is
// discovery.Connector, under a name of its own here for Discovery.
type Connector = discovery.Connector

// Discovery is a custom way of finding peers. The pattern calls it once, on
// a goroutine of its own, with a context that ends when the pattern closes
// and with the pattern itself as the Connector. It should connect to every
// compatible peer it finds and disconnect from peers that leave, until ctx
// ends. An error it returns is logged. WithService and WithWatcher cover
// package discovery; this is for anything else.
type Discovery func(ctx context.Context, c Connector) error

// WithDiscovery runs a custom Discovery for the pattern (see Discovery).
// Endpoints given with WithConnect are connected as well.
func WithDiscovery(d Discovery) Option {
	return func(o *options) error {
		if d == nil {
			return optErr("WithDiscovery: nil")
		}
		o.used |= oDiscovery
		o.discovery = d
		return nil
	}
}

// WithService joins the pattern to the discovery service called name
// (package discovery: multicast DNS, static peers, DNS SRV). A pattern that
// binds (WithBind) announces its bound endpoints under name, with its
// socket type, and stops announcing when it closes. A pattern that does not
// bind watches name and connects to every compatible peer announced there
// (a Requester to Repliers, a Subscriber to Publishers, a Puller to Pushers
// of its mode), and disconnects when a peer leaves.
//
// opts go to discovery.Announce or discovery.NewWatcher:
// discovery.WithLoopback for a single machine, discovery.WithStatic or
// discovery.WithSRV beyond one LAN. Patterns in one process find each other
// as patterns in two do: each announcement and each watch has a node id of
// its own (discovery.WithNodeID sets a stable one).
func WithService(name string, opts ...discovery.Option) Option {
	return func(o *options) error {
		if name == "" {
			return optErr("WithService: empty name")
		}
		o.used |= oDiscovery
		o.service = name
		o.serviceOpts = append(o.serviceOpts, opts...)
		return nil
	}
}

// WithWatcher connects the pattern to every compatible peer that w reports
// and disconnects it when they leave (discovery.AutoConnect). The watcher is
// the caller's: it may serve several patterns, and Close does not close it.
func WithWatcher(w *discovery.Watcher) Option {
	return func(o *options) error {
		if w == nil {
			return optErr("WithWatcher: nil")
		}
		o.used |= oDiscovery
		o.watcher = w
		return nil
	}
}

// joined is a pattern's link to discovery, undone by leave.
type joined struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ann    *discovery.Announcer
	owned  *discovery.Watcher
}

// join starts the discovery the options ask for. sockType is the pattern's
// socket type, c the pattern, endpoints its bound endpoints.
func join(o *options, sockType string, c Connector, endpoints []string) (*joined, error) {
	j := &joined{}
	if o.curve.client {
		c = curveConnector{Connector: c, o: o}
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	run := func(what string, f func(context.Context) error) {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				o.logger.Warn("pattern: discovery stopped", "via", what, "err", err)
			}
		}()
	}
	if o.service != "" {
		// The pattern's logger (WithLogger) hears what discovery drops or
		// fails to send, unless the service options give
		// discovery.WithLogger.
		sopts := append([]discovery.Option{discovery.WithLogger(o.logger)}, o.serviceOpts...)
		if len(o.binds) > 0 {
			a, err := discovery.Announce(o.service, sockType, endpoints, sopts...)
			if err != nil {
				j.leave()
				return nil, fmt.Errorf("pattern: announce %q: %w", o.service, err)
			}
			j.ann = a
		} else {
			w, err := discovery.NewWatcher(o.service, sopts...)
			if err != nil {
				j.leave()
				return nil, fmt.Errorf("pattern: watch %q: %w", o.service, err)
			}
			j.owned = w
			run("service "+o.service, func(ctx context.Context) error { return discovery.AutoConnect(ctx, w, c, sockType) })
		}
	}
	if w := o.watcher; w != nil {
		run("watcher", func(ctx context.Context) error { return discovery.AutoConnect(ctx, w, c, sockType) })
	}
	if d := o.discovery; d != nil {
		run("custom", func(ctx context.Context) error { return d(ctx, c) })
	}
	return j, nil
}

// leave stops announcing and auto-connecting; it waits for the discovery
// goroutines, which disconnect what they connected. It may be called on nil.
func (j *joined) leave() {
	if j == nil {
		return
	}
	if j.ann != nil {
		j.ann.Close() // goodbyes go out before the socket closes
	}
	j.cancel()
	j.wg.Wait()
	if j.owned != nil {
		j.owned.Close()
	}
}
