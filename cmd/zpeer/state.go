package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/metrics"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// state serve and state get: pattern's StateServer and Mirror over
// string values, with the socket commands' endpoint, discovery and
// security flags (sockOpts, secFlags).

// stateOpts are the flags of the state commands.
type stateOpts struct {
	sockOpts
	watch bool // get --watch
}

func (a *app) stateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Serve a replicated KEY=VALUE state, or mirror it",
		Long: `state replicates a key-value state from one server to any number of
mirrors (the ZeroMQ guide's Clone pattern): "state serve" holds the state and
publishes every change with a sequence number; "state get" takes a snapshot
and, with --watch, follows every change after it. A mirror that misses a
change, or whose server restarted, starts again from a new snapshot.

One server writes a state: this is replication, not consensus.`,
		Example: `  printf 'color=blue\nsize=3\n' | zpeer state serve --bind tcp://127.0.0.1:5560
  zpeer state get --connect tcp://127.0.0.1:5560
  zpeer state get --discover config --iface lo --watch`,
	}
	cmd.AddCommand(a.stateServeCommand(), a.stateGetCommand())
	return cmd
}

func (a *app) stateServeCommand() *cobra.Command {
	o := &stateOpts{}
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Hold a state read as KEY=VALUE lines from standard input, and serve it",
		Long: `serve reads KEY=VALUE lines from standard input and applies each to the
state as it comes: KEY=VALUE sets KEY, KEY= deletes it. Each change is
published to the mirrors at once. At the end of the input it keeps serving
the state, until Ctrl-C or SIGTERM. It binds (--bind, announced with
--discover); mirrors connect to it. It prints "bound ENDPOINT" on standard
error for each endpoint.`,
		Example: `  zpeer state serve --bind tcp://127.0.0.1:5560 < settings.txt
  zpeer state serve --bind 'tcp://*:5560' --discover config --key server.key_secret`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd.Flags(), true); err != nil {
				return err
			}
			return a.runStateServe(cmd.Context(), o)
		}),
	}
	o.addFlags(cmd.Flags(), true)
	return cmd
}

func (a *app) stateGetCommand() *cobra.Command {
	o := &stateOpts{}
	cmd := &cobra.Command{
		Use:   "get [flags]",
		Short: "Print a served state as KEY=VALUE lines; with --watch, follow it",
		Long: `get connects to a "state serve" (--connect, or --discover to find it by
name), takes a snapshot of its state and prints it as KEY=VALUE lines sorted
by key. With --watch it then prints each change as it comes: KEY=VALUE for a
key set, KEY= for a key deleted (after a re-synchronisation, the net
difference it found), until --count changes or Ctrl-C.

--timeout D bounds the wait for the snapshot (exit 1 when it does not come).`,
		Example: `  zpeer state get --connect tcp://127.0.0.1:5560
  zpeer state get --discover config --iface lo --watch`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd.Flags(), false); err != nil {
				return err
			}
			return a.runStateGet(cmd.Context(), o)
		}),
	}
	o.addFlags(cmd.Flags(), false)
	return cmd
}

func (o *stateOpts) addFlags(f *pflag.FlagSet, serve bool) {
	f.SortFlags = false
	f.StringArrayVarP(&o.binds, "bind", "b", nil, "listen on `EP` (tcp://host:port, tcp://*:0, ipc:///path); repeatable (serve)")
	f.StringArrayVarP(&o.connects, "connect", "c", nil, "connect to the server's `EP`; repeatable (get)")
	f.StringVarP(&o.discover, "discover", "d", "", "announce (serve) or find (get) the state server of `SERVICE` over mDNS")
	f.StringArrayVar(&o.ifaces, "iface", nil, "network interface `NAME` for --discover (lo: this machine only); repeatable, default all multicast interfaces")
	if !serve {
		f.DurationVar(&o.timeout, "timeout", 5*time.Second, "give up when no snapshot comes within `D` (0: wait for ever)")
		f.BoolVarP(&o.watch, "watch", "w", false, "after the snapshot, print each change as KEY=VALUE (KEY= for a delete)")
		f.IntVarP(&o.count, "count", "n", 0, "--watch: exit after `N` changes (0: until stopped)")
	}
	o.sec.register(f)
	f.StringVar(&o.name, "name", "", "node `NAME`: the sender in envelopes (default HOST-PID)")
	f.DurationVar(&o.linger, "linger", time.Second, "on exit, wait up to `D` for queued messages to go out")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log what the state server or mirror does on standard error")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics while the command runs (host:port; :0 picks a port)")
}

// validate checks the flags before anything touches the network.
func (o *stateOpts) validate(fs *pflag.FlagSet, serve bool) error {
	if o.name == "" {
		o.name = defaultName()
	}
	if o.discover != "" {
		if _, err := discovery.ServiceType(o.discover); err != nil {
			return usageError{err}
		}
	}
	switch {
	case serve && len(o.connects) > 0:
		return usagef("state serve binds (--bind, with --discover to announce it): mirrors connect to it")
	case serve && len(o.binds) == 0:
		return usagef("state serve needs --bind")
	case !serve && len(o.binds) > 0:
		return usagef("state get connects to its server (--connect or --discover); it does not bind")
	case !serve && len(o.connects) == 0 && o.discover == "":
		return usagef("state get needs --connect or --discover")
	case len(o.ifaces) > 0 && o.discover == "":
		return usagef("--iface needs --discover")
	case o.timeout < 0 || o.count < 0 || o.linger < 0:
		return usagef("--timeout, --count and --linger cannot be negative")
	case flagChanged(fs, "count") && !o.watch:
		return usagef("--count needs --watch")
	}
	return o.sec.resolve(len(o.binds) > 0, o.discover != "")
}

// options are the pattern options the flags ask for.
func (o *stateOpts) options(a *app) []pattern.Option {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	opts := []pattern.Option{
		pattern.WithName(o.name),
		pattern.WithLogger(slog.New(&lineHandler{a: a, level: level})),
		pattern.WithSocketOptions(socket.WithLinger(o.linger), socket.WithReconnect(50*time.Millisecond, 2*time.Second)),
	}
	for _, ep := range o.binds {
		opts = append(opts, pattern.WithBind(ep))
	}
	for _, ep := range o.connects {
		opts = append(opts, pattern.WithConnect(ep))
	}
	if o.discover != "" {
		opts = append(opts, pattern.WithService(o.discover, discoveryOptions(o.ifaces)...))
	}
	// The security flags as pattern options: pattern keeps the key of
	// each discovered server for both of the mirror's sockets.
	sec := &o.sec
	switch sec.mode {
	case curveServer, curveDiscovered:
		opts = append(opts, pattern.WithKey(sec.kp))
		if sec.trusted != nil {
			opts = append(opts, pattern.WithTrust(sec.trusted))
		}
	case curveClient:
		opts = append(opts, pattern.WithKey(sec.kp), pattern.WithServerKey(sec.server))
	}
	if len(sec.allow) > 0 {
		opts = append(opts, pattern.WithSocketOptions(socket.WithAllow(sec.allow...)))
	}
	if len(sec.deny) > 0 {
		opts = append(opts, pattern.WithSocketOptions(socket.WithDeny(sec.deny...)))
	}
	return opts
}

// runStateServe applies standard input to the state, then serves it
// until stopped.
func (a *app) runStateServe(ctx context.Context, o *stateOpts) error {
	srv, err := pattern.NewStateServer[string](o.options(a)...)
	if err != nil {
		return patternError(err)
	}
	defer srv.Close()
	ms, err := a.serveMetrics(o.metrics)
	if err != nil {
		return err
	}
	defer ms.Close()
	if c := ms.collector(); c != nil {
		c.AddState(metrics.RoleStateServer, "state", srv)
	}
	for _, ep := range srv.Endpoints() {
		a.errorf("bound %s", ep)
	}
	if o.verbose {
		a.errorf("zpeer: changes published at %s", strings.Join(srv.ChangesEndpoints(), " "))
	}
	lines := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(a.stdin)
		sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
		for sc.Scan() {
			select {
			case lines <- strings.TrimSuffix(sc.Text(), "\r"):
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()
	n := 0
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("reading standard input: %w", err)
				}
				lines = nil
				if o.verbose {
					a.errorf("zpeer: end of input: %d keys at seq %d; serving until stopped", srv.Len(), srv.Seq())
				}
				break
			}
			n++
			if err := applyLine(srv, line); err != nil {
				a.errorf("zpeer: line %d: %v", n, err)
			}
		case <-ctx.Done():
			lines = nil
		}
	}
	<-ctx.Done()
	if in, ok := errInterrupted(ctx); ok {
		st := srv.Stats()
		a.errorf("zpeer: %s: served %d keys at seq %d, %d snapshots", in, st.Keys, st.Seq, st.Snapshots)
		return reported{in}
	}
	return ctx.Err()
}

// applyLine applies one KEY=VALUE line (KEY= deletes; blank lines are
// skipped).
func applyLine(srv *pattern.StateServer[string], line string) error {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	key, val, ok := strings.Cut(line, "=")
	switch {
	case !ok:
		return fmt.Errorf("want KEY=VALUE (KEY= deletes), got %q", abbrev([]byte(line)))
	case key == "":
		return fmt.Errorf("empty key in %q", abbrev([]byte(line)))
	case val == "":
		return srv.Delete(key)
	}
	return srv.Set(key, val)
}

// runStateGet prints the snapshot, then with --watch the changes.
func (a *app) runStateGet(ctx context.Context, o *stateOpts) (err error) {
	m, err := pattern.NewMirror[string](o.options(a)...)
	if err != nil {
		return patternError(err)
	}
	defer m.Close()
	ms, err := a.serveMetrics(o.metrics)
	if err != nil {
		return err
	}
	defer ms.Close()
	if c := ms.collector(); c != nil {
		c.AddState(metrics.RoleMirror, "state", m)
	}
	out := newLineWriter(a.stdout)
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing output: %w", cerr)
		}
		if in, ok := errInterrupted(ctx); ok {
			err = reported{in}
		}
	}()
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if o.timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, o.timeout)
	}
	err = m.WaitSynced(wctx)
	cancel()
	if err != nil {
		if errors.Is(err, pattern.ErrTimeout) && ctx.Err() == nil {
			return fmt.Errorf("no state within %s (is a \"zpeer state serve\" there?)", o.timeout)
		}
		return err
	}
	if !o.watch {
		for _, e := range m.Range("") {
			if err := out.Line([]byte(e.Key + "=" + e.Value)); err != nil {
				return err
			}
		}
		return nil
	}
	initial, w := m.Watch("")
	defer w.Close()
	for _, e := range initial {
		if err := out.Line([]byte(e.Key + "=" + e.Value)); err != nil {
			return err
		}
	}
	for n := 0; o.count == 0 || n < o.count; n++ {
		c, err := w.Next(ctx)
		if err != nil {
			return err
		}
		if err := out.Line([]byte(c.Key + "=" + c.Value)); err != nil {
			return err
		}
	}
	return nil
}

// lineHandler writes the library's log records as "zpeer: " lines on
// standard error: the message and its attributes.
type lineHandler struct {
	a     *app
	level slog.Level
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(r.Message, "pattern: "))
	add := func(at slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", at.Key, at.Value)
		return true
	}
	for _, at := range h.attrs {
		add(at)
	}
	r.Attrs(add)
	h.a.errorf("zpeer: %s", b.String())
	return nil
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lineHandler{a: h.a, level: h.level, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
