package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// secFlags are the security flags of the socket commands. Secret keys only
// ever come from files: nothing secret goes on the command line.
type secFlags struct {
	key       string   // --key: our secret certificate file
	serverKey string   // --server-key: Z85 key or public certificate file
	trust     []string // --trust: Z85 keys, certificate files, directories
	allow     []string
	deny      []string

	// resolved by resolve
	mode    curveMode
	kp      socket.KeyPair
	server  socket.Key
	trusted *socket.KeySet
	keys    *pattern.ServerKeys // the server keys a client connects with (curveClient, curveDiscovered)
}

type curveMode uint8

const (
	curveOff        curveMode = iota
	curveServer               // --key with --bind
	curveClient               // --server-key
	curveDiscovered           // --discover without --bind, with --key or --trust: keys from announcements
)

func (f *secFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.key, "key", "", "this peer's secret certificate `FILE` (NAME.key_secret): with --bind a CURVE server, else the CURVE client's key")
	fs.StringVar(&f.serverKey, "server-key", "", "the CURVE server's public `KEY` (40 characters of Z85) or certificate file: makes a connecting socket a CURVE client")
	fs.StringArrayVar(&f.trust, "trust", nil, "trusted public `KEY`, certificate file or directory of *.key files; repeatable. A server lets in only these clients; --discover connects only to these servers")
	fs.StringArrayVar(&f.allow, "allow", nil, "accept connections only from `CIDR` (10.0.0.0/8, 192.168.1.7); repeatable")
	fs.StringArrayVar(&f.deny, "deny", nil, "refuse connections from `CIDR`; repeatable")
}

// resolve reads the key files and decides the CURVE role.
func (f *secFlags) resolve(binds bool, discover bool) error {
	if f.key != "" {
		c, err := socket.ReadCertificate(f.key)
		if err != nil {
			return usageError{fmt.Errorf("--key: %w", err)}
		}
		if c.Secret.IsZero() {
			return usagef("--key %s holds no secret key (give the .key_secret file)", f.key)
		}
		f.kp = c.KeyPair()
	}
	if f.serverKey != "" {
		k, err := socket.ReadServerKey(f.serverKey)
		if err != nil {
			return usageError{fmt.Errorf("--server-key: %w", err)}
		}
		f.server = k
	}
	if len(f.trust) > 0 {
		ks, err := socket.LoadTrust(f.trust...)
		if err != nil {
			return usageError{fmt.Errorf("--trust: %w", err)}
		}
		f.trusted = ks
	}
	// One rule per flag, whatever else is given (docs/security.md):
	// --trust lists the client keys a server lets in, or the server keys
	// a client connects to; a flag with nothing to apply to is an error,
	// never ignored.
	switch {
	case binds && f.serverKey != "":
		return usagef("--server-key is for connecting sockets; a socket that binds is the CURVE server (--key)")
	case binds && f.key != "":
		f.mode = curveServer
	case binds && len(f.trust) > 0:
		return usagef("--trust on a socket that binds lists the client keys its CURVE server lets in: it needs --key (the server's certificate)")
	case f.serverKey != "":
		if f.trusted != nil && !f.trusted.Contains(f.server) {
			return usagef("--server-key %s is not among the --trust keys: the client would never connect (add it to --trust, or drop one of the two)", f.server)
		}
		f.mode = curveClient
		f.keys = pattern.NewServerKeys(f.server, f.trusted)
	case discover && (f.key != "" || len(f.trust) > 0):
		f.mode = curveDiscovered
		f.keys = pattern.NewServerKeys(socket.Key{}, f.trusted)
	case f.key != "":
		return usagef("--key on a connecting socket needs --server-key (or --discover, which learns the server's key)")
	case len(f.trust) > 0:
		return usagef("--trust on a connecting socket lists the server keys it connects to: it needs --server-key (for --connect) or --discover")
	}
	if (len(f.allow) > 0 || len(f.deny) > 0) && !binds {
		return usagef("--allow and --deny filter incoming connections: they need --bind")
	}
	if f.mode != curveOff && f.kp.IsZero() {
		kp, err := socket.NewKeyPair() // a fresh key pair for this process
		if err != nil {
			return err
		}
		f.kp = kp
	}
	return nil
}

// socketOptions are the socket options the flags ask for.
func (f *secFlags) socketOptions() []socket.Option {
	var opts []socket.Option
	switch f.mode {
	case curveServer:
		opts = append(opts, socket.WithCurveServer(f.kp.Secret))
		if f.trusted != nil {
			opts = append(opts, socket.WithTrust(f.trusted))
		}
	case curveClient:
		// The key comes through f.keys, which checks --trust again at
		// every reconnection (a SIGHUP may have taken it out).
		opts = append(opts, socket.WithCurveClient(f.server, f.kp), socket.WithCurveServerKeys(f.keys.Lookup))
	case curveDiscovered:
		opts = append(opts, socket.WithCurveClientKey(f.kp), socket.WithCurveServerKeys(f.keys.Lookup))
	}
	if len(f.allow) > 0 {
		opts = append(opts, socket.WithAllow(f.allow...))
	}
	if len(f.deny) > 0 {
		opts = append(opts, socket.WithDeny(f.deny...))
	}
	return opts
}

// patternOptions are the pattern options the flags ask for (push and pull
// --ack run on pattern's sockets).
func (f *secFlags) patternOptions() []pattern.Option {
	var opts []pattern.Option
	switch f.mode {
	case curveServer, curveDiscovered:
		opts = append(opts, pattern.WithKey(f.kp))
	case curveClient:
		opts = append(opts, pattern.WithKey(f.kp), pattern.WithServerKey(f.server))
	}
	if f.trusted != nil {
		opts = append(opts, pattern.WithTrust(f.trusted))
	}
	var sopts []socket.Option
	if len(f.allow) > 0 {
		sopts = append(sopts, socket.WithAllow(f.allow...))
	}
	if len(f.deny) > 0 {
		sopts = append(sopts, socket.WithDeny(f.deny...))
	}
	if len(sopts) > 0 {
		opts = append(opts, pattern.WithSocketOptions(sopts...))
	}
	return opts
}

// patternSecurity is patternOptions with the logger of securityOptions.
func (s *session) patternSecurity() []pattern.Option {
	return append(s.o.sec.patternOptions(), pattern.WithSocketOptions(socket.WithLogger(s.libraryLogger())))
}

// securityOptions are the socket options of the flags, and the logger
// through which the socket reports the peers it refuses (rate-limited): a
// server's only trace of a refusal, shown without --verbose.
func (s *session) securityOptions() []socket.Option {
	return append(s.o.sec.socketOptions(), socket.WithLogger(s.libraryLogger()))
}

// libraryLogger is the logger the command gives the library: with -v
// every event as a slog text line (s.log); without, the warnings (a peer
// refused, a session revoked, a dead letter) as one plain line each.
func (s *session) libraryLogger() *slog.Logger {
	if s.o.verbose {
		return s.log
	}
	return slog.New(&refusalLog{s: s})
}

// refusalLog is the slog handler of the CLI's sockets: one line on
// standard error for each warning (a peer refused, a session closed
// because its key was revoked).
type refusalLog struct {
	s     *session
	attrs []slog.Attr
}

func (h *refusalLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *refusalLog) Handle(_ context.Context, r slog.Record) error {
	var ep, remote, reason, more string
	var other []string
	each := func(a slog.Attr) bool {
		switch a.Key {
		case "endpoint":
			ep = a.Value.String()
		case "remote":
			remote = a.Value.String()
		case "reason", "err":
			reason = a.Value.String()
		case "suppressed":
			more = fmt.Sprintf(" (and %s more not shown)", a.Value)
		default:
			other = append(other, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		each(a)
	}
	r.Attrs(each)
	if ep != "" {
		h.s.logf("%s at %s from %s: %s%s", r.Message, ep, remote, reason, more)
		return nil
	}
	if reason != "" {
		other = append(other, reason)
	}
	h.s.logf("%s: %s%s", r.Message, strings.Join(other, " "), more)
	return nil
}

func (h *refusalLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &refusalLog{s: h.s, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *refusalLog) WithGroup(string) slog.Handler { return h }

// securityEvent says, once per endpoint and without --verbose, why a peer
// this command connects to would not have it (the server's reason: an
// untrusted key, another mechanism), and keeps it as the endpoint's error
// for the message that explains an unreachable peer.
func (s *session) securityEvent(ev socket.Event) {
	var byPeer *socket.RefusedError
	var why string
	switch {
	case ev.Kind != socket.EventRejected && ev.Kind != socket.EventDisconnected:
		return
	case errors.As(ev.Err, &byPeer):
		why = fmt.Sprintf("%s refused this %s: %s", ev.Endpoint, s.sc.name, byPeer.Reason)
	case ev.Kind == socket.EventRejected && errors.Is(ev.Err, socket.ErrKey):
		why = fmt.Sprintf("not connecting to %s: %s", ev.Endpoint, strings.TrimPrefix(ev.Err.Error(), socket.ErrKey.Error()+": "))
	default:
		return
	}
	s.mu.Lock()
	s.dialErr[ev.Endpoint] = ev.Err
	s.mu.Unlock()
	s.refused(ev.Endpoint, errors.New(why))
}

// watchTrust reloads --trust on SIGHUP (a key file deleted from a trust
// directory, say) until the returned function is called, and logs the keys
// added and removed. A server closes the sessions of the keys removed at
// once; a client no longer reconnects to a server whose key was removed.
func (s *session) watchTrust() (stop func()) {
	f := &s.o.sec
	if f.trusted == nil {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hup:
				s.reloadTrust()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}
}

// reloadTrust reads the --trust sources again and makes the trusted keys
// what they now hold.
func (s *session) reloadTrust() {
	f := &s.o.sec
	ks, err := socket.LoadTrust(f.trust...)
	if err != nil {
		s.logf("SIGHUP: --trust not reloaded, the keys stay as they were: %v", err)
		return
	}
	added, removed := f.trusted.Replace(ks.Keys()...)
	names := func(keys []socket.Key) string {
		if len(keys) == 0 {
			return "none"
		}
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = k.String()
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	s.logf("SIGHUP: --trust reloaded, %d keys: added %s; removed %s", f.trusted.Len(), names(added), names(removed))
}

// announceOptions add the server's key to its announcement.
func (f *secFlags) announceOptions() []discovery.Option {
	if f.mode == curveServer {
		return []discovery.Option{discovery.WithCurveKey(f.kp.Public.String())}
	}
	return nil
}

// ConnectPeer makes the session's discovery connector decline untrusted
// peers and connect the others with the key they announced (with
// --discover and --key or --trust; pattern.ServerKeys holds the rule).
func (c *discConnector) ConnectPeer(p discovery.Peer, ep string) error {
	if c.s.o.sec.mode == curveDiscovered {
		if err := c.s.o.sec.keys.Admit(p, ep); err != nil {
			c.s.logf("not connecting to %s (%s): %v", ep, p.Instance, err)
			return err
		}
	}
	return c.Connect(ep)
}

var _ discovery.PeerConnector = (*discConnector)(nil)

func (a *app) keygenCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "keygen [PATH]",
		Short: "Make a CURVE key pair",
		Long: `keygen makes a CURVE key pair. With PATH (a name, or a path such as
keys/server, as ssh-keygen -f takes it; relative to --dir) it writes
PATH.key (the public certificate, mode 0644, to hand to peers) and
PATH.key_secret (mode 0600, to keep), in the ZPL format czmq's zcert and
pyzmq's zmq.auth write, and prints the public key. Existing files are never
overwritten. Without PATH it prints a fresh pair, public then secret.`,
		Example: `  zpeer keygen server
  zpeer keygen keys/worker
  zpeer rep --bind 'tcp://*:5555' --key server.key_secret
  zpeer req --connect tcp://host:5555 --server-key server.key hello`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				kp, err := socket.NewKeyPair()
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "public-key = %s\nsecret-key = %s\n", kp.Public, kp.Secret.Z85())
				return nil
			}
			path := args[0]
			name := filepath.Base(path)
			if path == "" || strings.HasSuffix(path, "/") || name == "." || name == ".." {
				return usagef("keygen PATH: %q does not name a file (want NAME or DIR/NAME)", path)
			}
			base := path
			if !filepath.IsAbs(path) {
				base = filepath.Join(dir, path)
			}
			for _, p := range []string{base + ".key", base + ".key_secret"} {
				if _, err := os.Lstat(p); err == nil {
					return usagef("keygen: %s exists; keys are not overwritten (remove it first)", p)
				}
			}
			cert, err := socket.NewCertificate(map[string]string{"name": name})
			if err != nil {
				return err
			}
			pub, sec, err := socket.WriteCertificate(base, cert)
			if err != nil {
				return err
			}
			a.errorf("wrote %s and %s", pub, sec)
			fmt.Fprintln(a.stdout, cert.Public)
			return nil
		}),
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "write the files in `DIR` (a relative PATH is taken from there)")
	return cmd
}
