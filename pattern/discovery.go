package pattern

import (
	"context"
	"sync"
)

// Connector is the part of a pattern that a discovery service drives: it
// connects to peers as they appear and disconnects from them as they leave.
// Every pattern satisfies it, and so does *socket.Socket; discovery's
// Connector interface has the same method set.
type Connector interface {
	Connect(ep string) error
	Disconnect(ep string) error
}

// Discovery joins a pattern to a discovery service. The pattern calls it
// once, on a goroutine of its own, with a context that ends when the pattern
// closes and with itself as the Connector. It should connect to every
// compatible peer it finds and disconnect from peers that leave, until ctx
// ends. An error it returns is logged.
//
// This is the hook for package discovery: wrap its AutoConnect (or a static
// peer list, or DNS SRV) in a Discovery and pass it with WithDiscovery.
type Discovery func(ctx context.Context, c Connector) error

// WithDiscovery joins the pattern to a discovery service (see Discovery);
// endpoints given with WithConnect are connected as well.
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

// runDiscovery starts o.discovery, if any, for c until ctx ends.
func runDiscovery(ctx context.Context, wg *sync.WaitGroup, o *options, c Connector) {
	if o.discovery == nil {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := o.discovery(ctx, c); err != nil && ctx.Err() == nil {
			o.logger.Warn("pattern: discovery stopped", "err", err)
		}
	}()
}
