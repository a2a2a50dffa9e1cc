package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"time"
)

// Option configures an Announcer or a Watcher. Options are applied in
// order; a nil Option is skipped; the first error is returned by Announce
// or NewWatcher. Each option says whom it concerns; the other side ignores
// it, so one option list can serve both.
type Option func(*options) error

// Defaults.
const (
	// DefaultTTL is the TTL of announced records: how long a watcher
	// (zpeer's, or any DNS-SD cache: avahi, python-zeroconf, Bonjour)
	// keeps a peer that stopped answering, such as one killed without a
	// goodbye. Watchers ask again at 80-95 % of it, so it also sets how
	// often a peer answers: about once per half TTL, whatever the number
	// of watchers.
	DefaultTTL = 15 * time.Second
	// DefaultRefresh is the longest gap between a Watcher's mDNS browse
	// queries (they start at 1 s and double up to it), and how often it
	// looks DNS SRV names up.
	DefaultRefresh = 5 * time.Second
	// DefaultUnreachableTimeout is how long a Watcher waits, after
	// ReportUnreachable, for a source to confirm the peer before it
	// reports the peer down.
	DefaultUnreachableTimeout = time.Second
)

// DefaultExpiry returns the expiry used when WithExpiry is not given:
// three refresh periods and one second (16 s with the default refresh).
// A Watcher keeps an mDNS peer that stopped answering for its records'
// TTL, at most the expiry: with zpeer's default TTL, 15 s.
func DefaultExpiry(refresh time.Duration) time.Duration { return 3*refresh + time.Second }

type srvSpec struct {
	name       string
	socketType string
}

type options struct {
	interfaces  []string
	loopback    bool
	ttl         time.Duration
	refresh     time.Duration
	expiry      time.Duration
	unreachable time.Duration
	meta        map[string]string
	curve       string
	node        string
	instance    string
	noMDNS      bool
	static      []Peer
	srv         []srvSpec
	dnsServer   string
	logger      *slog.Logger
}

func buildOptions(opts []Option) (options, error) {
	o := options{
		ttl:         DefaultTTL,
		refresh:     DefaultRefresh,
		unreachable: DefaultUnreachableTimeout,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			// Every option error wraps ErrOption (and may wrap a
			// more precise one: ErrInvalidEndpoint, ErrInvalidMeta).
			if !errors.Is(err, ErrOption) {
				err = fmt.Errorf("%w: %w", ErrOption, err)
			}
			return o, err
		}
	}
	if o.expiry == 0 {
		o.expiry = DefaultExpiry(o.refresh)
	}
	if o.expiry <= o.refresh {
		return o, fmt.Errorf("%w: expiry %v must be longer than refresh %v", ErrOption, o.expiry, o.refresh)
	}
	if o.loopback && len(o.interfaces) > 0 {
		return o, fmt.Errorf("%w: WithLoopback and WithInterfaces exclude each other", ErrOption)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.node == "" {
		o.node = newNodeID() // one per Announcer or Watcher
	}
	return o, nil
}

// WithInterfaces restricts mDNS to the named interfaces (Announcer and
// Watcher). By default every interface that is up, multicast-capable and
// has an IPv4 address is used. Naming the loopback interface is allowed; it
// then announces its own addresses like any other interface (see
// WithLoopback for the single-machine mode).
func WithInterfaces(names ...string) Option {
	return func(o *options) error {
		if len(names) == 0 {
			return fmt.Errorf("%w: WithInterfaces needs at least one name", ErrOption)
		}
		for _, n := range names {
			if n == "" {
				return fmt.Errorf("%w: empty interface name", ErrOption)
			}
		}
		o.interfaces = append([]string(nil), names...)
		return nil
	}
}

// WithLoopback selects the single-machine mode (Announcer and Watcher):
// mDNS runs on the loopback interface only and announces 127.0.0.1. Nothing
// is sent on any other interface. Demos and tests use it.
func WithLoopback() Option {
	return func(o *options) error {
		o.loopback = true
		return nil
	}
}

// WithTTL sets the TTL of the announced records (Announcer), 1 s to 75 min;
// the default is DefaultTTL. Watchers (zpeer's, up to their expiry, and
// foreign DNS-SD caches) forget a peer that was killed (no goodbye) after
// this time, and ask for its records again at 80-95 % of it.
func WithTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second || d > 75*time.Minute {
			return fmt.Errorf("%w: TTL %v outside 1s..75m", ErrOption, d)
		}
		o.ttl = d
		return nil
	}
}

// WithRefresh sets the longest gap between a Watcher's mDNS browse
// queries, and how often it re-resolves DNS SRV names; the default is
// DefaultRefresh. It must be at least 50 ms. Browse queries go out at
// start, then after 1 s (or the refresh, if shorter), 2 s, 4 s ...
// doubling up to it; a query for the same service by another host on the
// link stands for the Watcher's own, so a link carries about one browse
// round per refresh period however many hosts watch. It also bounds how
// long a peer whose announcements were lost, or a cut-off peer that comes
// back, goes unseen.
func WithRefresh(d time.Duration) Option {
	return func(o *options) error {
		if d < 50*time.Millisecond {
			return fmt.Errorf("%w: refresh %v below 50ms", ErrOption, d)
		}
		o.refresh = d
		return nil
	}
}

// WithExpiry sets the longest a Watcher keeps an mDNS peer that no longer
// answers before reporting it down (ReasonExpired): a peer's records live
// for their TTL (WithTTL on its side), at most the expiry. It must be
// longer than the refresh period; the default is DefaultExpiry(refresh).
// A peer killed without a goodbye is reported down at most that lifetime
// (plus one check period, a tenth of min(expiry, unreachable timeout), at
// most 1 s) after its last answer.
func WithExpiry(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: expiry %v", ErrOption, d)
		}
		o.expiry = d
		return nil
	}
}

// WithUnreachableTimeout sets how long a Watcher waits, after
// ReportUnreachable, for a fresh sighting of the peer before reporting it
// down (ReasonUnreachable). The default is DefaultUnreachableTimeout.
func WithUnreachableTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: unreachable timeout %v", ErrOption, d)
		}
		o.unreachable = d
		return nil
	}
}

// WithMeta adds application metadata to an announcement (Announcer). Each
// key=value becomes one TXT entry and must fit in 255 bytes
// (ErrTXTTooLong); keys are printable ASCII without '=', compared without
// case, and must not be one of the schema's keys (ErrInvalidMeta). Later
// calls add to earlier ones.
func WithMeta(meta map[string]string) Option {
	return func(o *options) error {
		if err := checkMeta(meta); err != nil {
			return err
		}
		if o.meta == nil {
			o.meta = make(map[string]string, len(meta))
		}
		maps.Copy(o.meta, meta)
		return checkMeta(o.meta)
	}
}

// WithNodeID sets the node id of one Announcer or Watcher (by default each
// draws a random one of its own): 1 to 32 characters from [0-9A-Za-z_-]. A
// Watcher ignores announcements carrying its own node id, so an Announcer
// and a Watcher given the same id (NodeID, say) do not see each other.
func WithNodeID(id string) Option {
	return func(o *options) error {
		if !validNodeID(id) {
			return fmt.Errorf("%w: node id %q", ErrOption, id)
		}
		o.node = id
		return nil
	}
}

// WithInstance sets the DNS-SD instance name of an announcement
// (Announcer), as DNS-SD browsers show it: 1 to 63 bytes of UTF-8 text
// without control characters. The default is "<type>-<node>-<n>", e.g.
// "pub-3f2a9c1b5d7e8f00-1". Two announcements of one service on a network
// must not share an instance name.
func WithInstance(name string) Option {
	return func(o *options) error {
		if name == "" || len(name) > 63 {
			return fmt.Errorf("%w: instance name %q must be 1 to 63 bytes", ErrOption, name)
		}
		for i := 0; i < len(name); i++ {
			if name[i] < 0x20 || name[i] == 0x7f {
				return fmt.Errorf("%w: instance name %q has a control character", ErrOption, name)
			}
		}
		o.instance = name
		return nil
	}
}

// WithoutMDNS turns mDNS browsing off in a Watcher, which then reports only
// the peers of WithStatic and WithSRV.
func WithoutMDNS() Option {
	return func(o *options) error {
		o.noMDNS = true
		return nil
	}
}

// WithStatic adds fixed peers to a Watcher. Each needs a socket Type and at
// least one endpoint; Key, Source and Service are filled in. Static peers
// are up from the start, never expire, and are not reported down by
// ReportUnreachable (the socket layer keeps reconnecting to them).
func WithStatic(peers ...Peer) Option {
	return func(o *options) error {
		for _, p := range peers {
			t, err := parseSocketType(p.Type)
			if err != nil {
				return err
			}
			if len(p.Endpoints) == 0 {
				return fmt.Errorf("%w: static peer without endpoint", ErrInvalidEndpoint)
			}
			for _, ep := range p.Endpoints {
				if err := checkEndpoint(ep); err != nil {
					return err
				}
			}
			p = p.clone()
			p.Type = t
			o.static = append(o.static, p)
		}
		return nil
	}
}

// WithSRV adds a DNS SRV source to a Watcher: name is looked up over
// unicast DNS every refresh period, e.g.
// "_zmq._tcp.telemetry.default.svc.cluster.local" (a Kubernetes headless
// service) or "telemetry.service.consul". Every SRV record is one peer;
// TXT records at the SRV target (or at name, for all targets) in the
// zpeer schema give its node id, type, endpoints and metadata. socketType
// fallbackType (may be empty)
// is used for peers whose TXT gives no type.
func WithSRV(name, fallbackType string) Option {
	return func(o *options) error {
		if strings.TrimSuffix(name, ".") == "" {
			return fmt.Errorf("%w: empty SRV name", ErrOption)
		}
		st := ""
		if fallbackType != "" {
			t, err := parseSocketType(fallbackType)
			if err != nil {
				return err
			}
			st = t
		}
		o.srv = append(o.srv, srvSpec{name: name, socketType: st})
		return nil
	}
}

// WithDNSServer sets the unicast DNS server ("host:port") used by WithSRV
// sources. The default is the first nameserver of /etc/resolv.conf.
func WithDNSServer(addr string) Option {
	return func(o *options) error {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%w: DNS server %q: %v", ErrOption, addr, err)
		}
		o.dnsServer = addr
		return nil
	}
}

// WithCurveKey announces a CURVE server's long-term public key (40
// characters of Z85) in the TXT key "curve", so that clients need not be
// given it: a client connects with the announced key, and one with a trust
// list connects only to peers announcing a trusted key. The announcement
// proves nothing by itself; the CURVE handshake does.
func WithCurveKey(z85 string) Option {
	return func(o *options) error {
		if !validCurveKey(z85) {
			return fmt.Errorf("%w: curve key %q is not 40 characters of Z85", ErrInvalidMeta, z85)
		}
		o.curve = z85
		return nil
	}
}
