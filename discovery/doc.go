// Package discovery lets zpeer programs find each other with no address
// typed in: a socket that binds announces itself, and a socket that
// connects watches for compatible peers and connects to each one as it
// appears and disconnects when it goes.
//
// On one LAN it uses multicast DNS service discovery (DNS-SD over mDNS,
// RFC 6762 and 6763), so any DNS-SD browser (avahi-browse, dns-sd,
// python-zeroconf) lists zpeer peers too. Beyond one LAN, a fixed list of
// peers and DNS SRV records (a Kubernetes headless service, Consul DNS)
// feed the same events. docs/discovery.md documents the naming, the TXT
// schema, the timings and the limits.
//
// Announce (a socket that binds):
//
//	a, err := discovery.Announce("telemetry", "PUB", []string{"tcp://0.0.0.0:5555"},
//		discovery.WithMeta(map[string]string{"region": "eu"}))
//	...
//	defer a.Close() // sends goodbyes: watchers see the peer leave at once
//
// Watch (a socket that connects):
//
//	w, err := discovery.NewWatcher("telemetry")
//	...
//	defer w.Close()
//	for ev := range w.Events() {
//		fmt.Println(ev.Kind, ev.Peer.Type, ev.Peer.Endpoint(), ev.Peer.Meta)
//	}
//
// Auto-connect a socket (anything with Connect and Disconnect):
//
//	go discovery.AutoConnect(ctx, w, sub, "SUB") // SUB connects to every PUB
//
// WithLoopback runs everything on the loopback interface and announces
// 127.0.0.1: the single-machine mode of demos and tests, which sends
// nothing on the network.
//
// A process runs one mDNS stack, whatever the number of Announcers and
// Watchers: one socket per interface, opened by the first user and closed
// by the last, one reader that parses each packet once and hands queries to
// announcers and responses to watchers through bounded queues. Stats and
// StackStats count packets, send errors, drops and peers; WithLogger logs
// what is dropped or fails.
//
// Liveness follows RFC 6762's caches. A peer's records live for their
// TTL (15 s by default, WithTTL), at most the expiry (WithExpiry); a
// Watcher asks for them again near the end (80-95 %), hears goodbyes at
// once, reports a peer whose records ran out down, and takes hints from
// the socket layer: Touch when a peer was heard from, ReportUnreachable
// when its connection was lost. Its queries list the answers it holds
// (known-answer suppression), and a query for the same service from
// another host stands for its own (duplicate question suppression), so a
// link where every host watches carries about one query per refresh
// period (WithRefresh) and one answer per peer per half TTL: traffic that
// grows with the number of hosts, not with its square (docs/scaling.md).
//
// Options and errors: Option is func(*options) error with the struct
// unexported (as in pattern, for the same reason: it holds resolved state
// that is not API; socket exports its flat Options for pattern to read).
// Options apply in order, nil skipped, the first error returned; every
// option error wraps ErrOption, beside a more precise sentinel
// where there is one (ErrInvalidEndpoint, ErrInvalidMeta,
// ErrInvalidSocketType).
//
// The package does not open ZeroMQ connections itself (that is package
// socket's job, through the Connector interface), does not carry messages,
// and does not secure anything: announcements are unauthenticated, and any
// host on the link can announce any service.
package discovery
