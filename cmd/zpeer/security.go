package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	keys    *pattern.ServerKeys // discovered server keys (curveDiscovered)
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
	switch {
	case binds && f.serverKey != "":
		return usagef("--server-key is for connecting sockets; a socket that binds is the CURVE server (--key)")
	case binds && f.key != "":
		f.mode = curveServer
	case binds && len(f.trust) > 0:
		return usagef("--trust on a socket that binds needs --key (its CURVE server certificate)")
	case f.serverKey != "":
		f.mode = curveClient
	case discover && (f.key != "" || len(f.trust) > 0):
		f.mode = curveDiscovered
		f.keys = pattern.NewServerKeys(socket.Key{}, f.trusted)
	case f.key != "":
		return usagef("--key on a connecting socket needs --server-key (or --discover, which learns the server's key)")
	case len(f.trust) > 0:
		return usagef("--trust on a connecting socket needs --discover")
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
		opts = append(opts, socket.WithCurveClient(f.server, f.kp))
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
