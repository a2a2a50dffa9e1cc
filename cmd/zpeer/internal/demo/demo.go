package demo

import (
	"context"
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/metrics"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// Config sets the demo's size. The zero value gives the default demo.
type Config struct {
	// Phase is how long each pattern runs (default 3s).
	Phase time.Duration
	// Clients is the number of concurrent requesters' calls (default 4).
	Clients int
	// Subscribers and Workers size the publish/subscribe and pipeline
	// networks (default 3 each).
	Subscribers, Workers int
	// PubRate and PushRate pace the publisher and the pusher, in
	// messages per second (defaults 10,000 and 3,000).
	PubRate, PushRate int
	// Work is the time a pipeline worker spends on each job (default
	// 500µs); each worker runs 4 jobs at once.
	Work time.Duration
	// Log, when set, receives one line per step.
	Log func(format string, args ...any)
	// Progress, when set, is told the phase under way and how far it is
	// (0 to 1).
	Progress func(phase string, frac float64)
	// Metrics, when set, gets every pattern role of the network (zpeer
	// demo --metrics).
	Metrics *metrics.Collector
}

func (c *Config) defaults() {
	if c.Phase <= 0 {
		c.Phase = 3 * time.Second
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 3
	}
	if c.Workers <= 0 {
		c.Workers = 3
	}
	if c.PubRate <= 0 {
		c.PubRate = 10_000
	}
	if c.PushRate <= 0 {
		c.PushRate = 3_000
	}
	if c.Work <= 0 {
		c.Work = 500 * time.Microsecond
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	if c.Progress == nil {
		c.Progress = func(string, float64) {}
	}
}

// Figures are one pattern's results.
type Figures struct {
	Pattern string `json:"pattern"`
	Peers   string `json:"peers"`
	// Sent counts what the application sent: requests, publications
	// (times subscribers: each subscriber should get each one), jobs.
	Sent uint64 `json:"sent"`
	// Delivered counts what reached the application: replies, received
	// publications, jobs processed (each job once).
	Delivered   uint64        `json:"delivered"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	MsgsPerSec  float64       `json:"msgs_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	Reliability float64       `json:"reliability"`
	// Product is msgs/s x p50 latency in seconds: by Little's law, the
	// messages in flight.
	Product float64  `json:"product"`
	Latency string   `json:"latency"` // what the latency measures
	Notes   []string `json:"notes"`
}

// Summary is the outcome of a demo run.
type Summary struct {
	Peers     int           `json:"peers"`
	Services  []string      `json:"services"`
	Discovery time.Duration `json:"discovery_ns"` // slowest time for a pattern's peers to find each other
	Elapsed   time.Duration `json:"elapsed_ns"`
	Patterns  []Figures     `json:"patterns"`
}

// Run runs the demo network and returns its summary. It sends mDNS on the
// loopback interface only, and every socket is on 127.0.0.1.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg.defaults()
	start := time.Now()
	n := &network{cfg: cfg, tag: fmt.Sprintf("%04x", rand.Uint32()&0xffff), trusted: socket.NewKeySet()}
	defer n.closeAll()
	sum := &Summary{}
	for _, phase := range []func(context.Context) (Figures, error){n.reqRep, n.pubSub, n.pipeline} {
		f, err := phase(ctx)
		if err != nil {
			return nil, err
		}
		sum.Patterns = append(sum.Patterns, f)
	}
	sum.Peers, sum.Services, sum.Discovery = n.peers, n.services, n.discovery
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// network holds what the demo started, to close it all at the end.
type network struct {
	cfg       Config
	tag       string // makes this run's service names unique on the machine
	mu        sync.Mutex
	closers   []func() error
	peers     int
	services  []string
	discovery time.Duration
	// trusted holds the public keys of the servers (the peers that bind)
	// made at start; the connecting peers connect only to these.
	trusted *socket.KeySet
}

// server makes a CURVE key pair for a peer that binds and trusts it: with
// pattern.WithKey it is the peer's key, and announce publishes its public
// half.
func (n *network) server() (socket.KeyPair, error) {
	kp, err := socket.NewKeyPair()
	if err != nil {
		return kp, err
	}
	n.trusted.Add(kp.Public)
	return kp, nil
}

// client is the options of a peer that connects: CURVE with a fresh key
// pair, to servers whose key is trusted only.
func (n *network) client(opts ...pattern.Option) []pattern.Option {
	return append(opts, pattern.WithKey(socket.KeyPair{}), pattern.WithTrust(n.trusted))
}

func (n *network) service(name string) string {
	s := name + "-" + n.tag
	n.services = append(n.services, s)
	return s
}

// expose adds a pattern role to the metrics (Config.Metrics), if any.
func (n *network) expose(role metrics.Role, name string, src metrics.StatsSource) {
	if n.cfg.Metrics != nil {
		n.cfg.Metrics.AddPattern(role, name, src)
	}
}

func (n *network) onClose(fn func() error) {
	n.mu.Lock()
	n.closers = append(n.closers, fn)
	n.mu.Unlock()
}

func (n *network) closeAll() {
	n.mu.Lock()
	cs := n.closers
	n.closers = nil
	n.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// announce publishes a bound peer under service. Every peer has its own
// node id: a watcher ignores announcements of its own node, and all the
// demo's peers live in one process.
func (n *network) announce(service, typ, node string, endpoints []string, key socket.Key) (*discovery.Announcer, error) {
	a, err := discovery.Announce(service, typ, endpoints,
		discovery.WithLoopback(),
		discovery.WithNodeID(node),
		discovery.WithMeta(map[string]string{"demo": node}),
		discovery.WithCurveKey(key.String()))
	if err != nil {
		return nil, fmt.Errorf("demo: announce %s: %w", node, err)
	}
	n.onClose(a.Close)
	n.peers++
	return a, nil
}

// find returns a pattern.Discovery that connects to the compatible peers of
// service as they appear, over mDNS on the loopback interface.
func (n *network) find(service, localType, node string) pattern.Discovery {
	n.peers++
	return func(ctx context.Context, c pattern.Connector) error {
		w, err := discovery.NewWatcher(service,
			discovery.WithLoopback(),
			discovery.WithNodeID(node),
			discovery.WithRefresh(time.Second))
		if err != nil {
			return err
		}
		defer w.Close()
		return discovery.AutoConnect(ctx, w, c, localType)
	}
}

// waitFor polls cond until it holds, for at most d: how the demo waits for
// discovery to connect its peers.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("demo: %s: not within %s", what, d)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// found records how long discovery took for one pattern.
func (n *network) found(d time.Duration) {
	n.discovery = max(n.discovery, d)
}

const (
	discoveryTimeout = 15 * time.Second
	local            = "tcp://127.0.0.1:0"
)

// pacer spreads rate messages per second over ticks of a millisecond.
type pacer struct {
	rate  int
	start time.Time
	sent  int
}

// next blocks until the next message is due, or ctx ends.
func (p *pacer) next(ctx context.Context) error {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(p.sent) * time.Second / time.Duration(p.rate))
	p.sent++
	if d := time.Until(due); d > time.Millisecond {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}
