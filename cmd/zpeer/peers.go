package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

type peersOpts struct {
	services []string
	ifaces   []string
	watch    bool
	json     bool
	wait     time.Duration
	count    int
	timeout  time.Duration
	trust    []string
	trusted  *socket.KeySet
	metrics  string
}

func (a *app) peersCommand() *cobra.Command {
	o := &peersOpts{}
	cmd := &cobra.Command{
		Use:   "peers [flags]",
		Short: "List the peers that discovery sees",
		Long: `peers browses for the peers of the --service names given, or of every
service announced on the network, over mDNS and lists them: service, socket
type, endpoint, node id, metadata and when each was last seen. With --watch
it streams up, updated and down events instead, until --count events,
--timeout or Ctrl-C.`,
		Example: `  zpeer peers --iface lo
  zpeer peers --service jobs --iface lo
  zpeer peers --service jobs --service weather --json
  zpeer peers --service jobs --watch`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			for _, svc := range o.services {
				if _, err := discovery.ServiceType(svc); err != nil {
					return usageError{err}
				}
			}
			if o.count < 0 || o.wait < 0 || o.timeout < 0 {
				return usagef("--count, --wait and --timeout cannot be negative")
			}
			if len(o.trust) > 0 {
				ks, err := socket.LoadTrust(o.trust...)
				if err != nil {
					return usageError{fmt.Errorf("--trust: %w", err)}
				}
				o.trusted = ks
			}
			return a.runPeers(cmd.Context(), o)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringArrayVarP(&o.services, "service", "s", nil, "service `NAME` to browse; repeatable, default every service announced")
	f.StringArrayVar(&o.ifaces, "iface", nil, "network interface `NAME` (lo: this machine only); repeatable, default all multicast interfaces")
	f.BoolVarP(&o.watch, "watch", "w", false, "stream up, updated and down events")
	f.StringVar(&o.metrics, "metrics", "", "--watch: serve Prometheus metrics (the watchers and the mDNS stack) on http://`ADDR`/metrics")
	f.BoolVar(&o.json, "json", false, "print one JSON object per peer or event")
	f.DurationVar(&o.wait, "wait", 2*time.Second, "how long to browse before listing `D`")
	f.IntVarP(&o.count, "count", "n", 0, "--watch: stop after `N` events (0: no limit)")
	f.DurationVar(&o.timeout, "timeout", 0, "--watch: stop after `D` (0: until Ctrl-C)")
	f.StringArrayVar(&o.trust, "trust", nil, "trusted public `KEY`, certificate file or directory of *.key files: mark each peer's announced CURVE key trusted or untrusted; repeatable")
	return cmd
}

// peerEvent is one watcher event with the service it came from.
type peerEvent struct {
	discovery.Event
	service string
}

// peerRecord is the --json form of a peer or an event.
type peerRecord struct {
	Event     string            `json:"event,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Service   string            `json:"service"`
	Type      string            `json:"type"`
	Endpoint  string            `json:"endpoint"`
	Endpoints []string          `json:"endpoints"`
	Node      string            `json:"node"`
	Instance  string            `json:"instance"`
	Source    string            `json:"source"`
	Meta      map[string]string `json:"meta"`
	Curve     string            `json:"curve,omitempty"`   // the announced CURVE key
	Trusted   *bool             `json:"trusted,omitempty"` // with --trust
	LastSeen  time.Time         `json:"last_seen"`
	Time      *time.Time        `json:"time,omitempty"` // --watch: when the event happened
}

// trustString says whether a peer's announced key is trusted (--trust).
func (o *peersOpts) trustString(p discovery.Peer) string {
	switch {
	case p.Curve == "":
		return "-"
	case o.trusted == nil:
		return p.Curve
	}
	k, err := socket.ParseKey(p.Curve)
	if err == nil && o.trusted.Contains(k) {
		return p.Curve + " (trusted)"
	}
	return p.Curve + " (untrusted)"
}

func (o *peersOpts) record(service string, p discovery.Peer, seen time.Time) peerRecord {
	r := newPeerRecord(service, p, seen)
	r.Curve = p.Curve
	if o.trusted != nil && p.Curve != "" {
		k, err := socket.ParseKey(p.Curve)
		t := err == nil && o.trusted.Contains(k)
		r.Trusted = &t
	}
	return r
}

func newPeerRecord(service string, p discovery.Peer, seen time.Time) peerRecord {
	r := peerRecord{
		Service: service, Type: p.Type, Endpoint: p.Endpoint(), Endpoints: p.Endpoints,
		Node: p.Node, Instance: p.Instance, Source: p.Source, Meta: p.Meta, LastSeen: seen.UTC(),
	}
	if r.Meta == nil {
		r.Meta = map[string]string{}
	}
	if r.Endpoints == nil {
		r.Endpoints = []string{}
	}
	return r
}

// lastSeen is when the event's peer was last seen alive (for a down event,
// before the event).
func lastSeen(ev discovery.Event) time.Time {
	if ev.LastSeen.IsZero() {
		return ev.Time
	}
	return ev.LastSeen
}

func metaString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func (a *app) runPeers(ctx context.Context, o *peersOpts) error {
	ms, err := a.serveMetrics(o.metrics)
	if err != nil {
		return err
	}
	defer ms.Close()
	events := make(chan peerEvent, 64)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	watching := make(map[string]bool)
	var watchers []*discovery.Watcher
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range watchers {
			w.Close()
		}
	}()
	watch := func(svc string) error {
		mu.Lock()
		defer mu.Unlock()
		if watching[svc] {
			return nil
		}
		w, err := discovery.NewWatcher(svc, discoveryOptions(o.ifaces)...)
		if err != nil {
			return discoveryError(err)
		}
		watching[svc] = true
		watchers = append(watchers, w)
		if c := ms.collector(); c != nil {
			c.AddWatcher(svc, w)
		}
		go func(ch <-chan discovery.Event) {
			for ev := range ch {
				select {
				case events <- peerEvent{ev, svc}:
				case <-wctx.Done():
					return
				}
			}
		}(w.Subscribe(wctx))
		return nil
	}
	for _, svc := range o.services {
		if err := watch(svc); err != nil {
			return err
		}
	}
	if len(o.services) == 0 {
		// No --service: ask which services are announced, and watch each;
		// with --watch, keep asking for new ones.
		find := func() error {
			names, err := discovery.BrowseServices(wctx, min(o.wait, time.Second), discoveryOptions(o.ifaces)...)
			for _, svc := range names {
				watch(svc) // a foreign, non-zpeer service name may not be valid: skip it
			}
			return err
		}
		if err := find(); err != nil && wctx.Err() == nil {
			return discoveryError(err)
		}
		if o.watch {
			go func() {
				t := time.NewTicker(3 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-wctx.Done():
						return
					case <-t.C:
						find()
					}
				}
			}()
		}
	}
	out := newLineWriter(a.stdout)
	defer out.Close()
	if o.watch {
		return a.watchPeers(ctx, o, events, out)
	}
	return a.listPeers(ctx, o, events, out)
}

// listPeers browses for --wait and prints the peers that are up.
func (a *app) listPeers(ctx context.Context, o *peersOpts, events <-chan peerEvent, out *lineWriter) error {
	type seen struct {
		service string
		peer    discovery.Peer
		at      time.Time
	}
	peers := make(map[string]seen)
	t := time.NewTimer(o.wait)
	defer t.Stop()
	status := startStatus(a.stderr, &a.errMu, 100*time.Millisecond, func() string {
		return fmt.Sprintf("browsing: %d peers", len(peers))
	})
	defer status.Stop()
loop:
	for {
		select {
		case ev := <-events:
			key := ev.service + "\x00" + ev.Peer.Key
			if ev.Kind == discovery.PeerDown {
				delete(peers, key)
			} else {
				peers[key] = seen{ev.service, ev.Peer, lastSeen(ev.Event)}
			}
		case <-t.C:
			break loop
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	list := make([]seen, 0, len(peers))
	for _, p := range peers {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool {
		x, y := list[i], list[j]
		if x.service != y.service {
			return x.service < y.service
		}
		if x.peer.Type != y.peer.Type {
			return x.peer.Type < y.peer.Type
		}
		return x.peer.Endpoint() < y.peer.Endpoint()
	})
	status.Stop()
	if len(list) == 0 {
		what := strings.Join(o.services, ", ")
		if what == "" {
			what = "any service"
		}
		a.errorf("zpeer: no peers of %s seen in %s", what, o.wait)
		return nil
	}
	if o.json {
		for _, p := range list {
			if err := out.JSON(o.record(p.service, p.peer, p.at)); err != nil {
				return err
			}
		}
		return nil
	}
	out.Close()
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tTYPE\tENDPOINT\tNODE\tLAST SEEN\tMETA\tCURVE KEY")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\t%s\t%s\n", p.service, p.peer.Type, p.peer.Endpoint(),
			p.peer.Node, time.Since(p.at).Round(100*time.Millisecond), metaString(p.peer.Meta), o.trustString(p.peer))
	}
	return tw.Flush()
}

// watchPeers prints each event as it happens.
func (a *app) watchPeers(ctx context.Context, o *peersOpts, events <-chan peerEvent, out *lineWriter) error {
	var timeout <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	n := 0
	for o.count == 0 || n < o.count {
		select {
		case ev := <-events:
			n++
			kind := strings.ToLower(ev.Kind.String())
			switch ev.Kind {
			case discovery.PeerUp:
				kind = "up"
			case discovery.PeerUpdated:
				kind = "updated"
			case discovery.PeerDown:
				kind = "down"
			}
			if o.json {
				r := o.record(ev.service, ev.Peer, lastSeen(ev.Event))
				at := ev.Time.UTC()
				r.Event, r.Reason, r.Time = kind, ev.Reason, &at
				if err := out.JSON(r); err != nil {
					return err
				}
				continue
			}
			line := fmt.Sprintf("%-7s %s %s %s node=%s %s", kind, ev.service, ev.Peer.Type, ev.Peer.Endpoint(), ev.Peer.Node, metaString(ev.Peer.Meta))
			if ev.Peer.Curve != "" {
				line += " curve=" + o.trustString(ev.Peer)
			}
			if ev.Reason != "" {
				line += " (" + ev.Reason + ")"
			}
			if err := out.Line([]byte(line)); err != nil {
				return err
			}
		case <-timeout:
			return nil
		case <-ctx.Done():
			if in, ok := errInterrupted(ctx); ok {
				out.Close()
				a.errorf("zpeer: %s: %d events", in, n)
				return reported{in}
			}
			return ctx.Err()
		}
	}
	return nil
}
