package pattern

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/socket"
)

// CURVE for patterns (see docs/security.md). A pattern given any of
// WithKey, WithServerKey or WithTrust speaks CURVE on every connection:
//
//   - A pattern that binds is a CURVE server with its key pair (WithKey;
//     without one, a fresh pair made at construction). With WithService it
//     announces its public key in the TXT key "curve". WithTrust lists the
//     only client keys it lets in, WithAuthenticator checks clients further.
//     Without either, any client that completes the handshake gets in:
//     encryption and server authentication, not client authentication.
//   - A pattern that only connects is a CURVE client with its key pair
//     (WithKey; without one, a fresh pair). Explicit endpoints
//     (WithConnect) take the server key from WithServerKey. Discovered
//     peers (WithService, WithWatcher) are connected with the key they
//     announce; with WithTrust, only those announcing a trusted key are
//     connected to (the handshake then proves the peer holds it), and the
//     others are logged with their key and skipped. With WithServerKey and
//     discovery, only peers announcing that key are connected to.
//
// A binding pattern is the CURVE server on every connection, including
// those it dials (as libzmq's CURVE_SERVER option): it cannot also be a
// CURVE client of another server.

// WithKey gives the pattern its long-term CURVE key pair (from
// socket.ReadCertificate(...).KeyPair(), say); a zero pair makes a fresh one.
func WithKey(kp socket.KeyPair) Option {
	return func(o *options) error {
		if !kp.IsZero() && kp.Secret.Public() != kp.Public {
			return optErr("WithKey: the public key does not belong to the secret key")
		}
		o.used |= oCurve
		o.curve.on, o.curve.key = true, kp
		return nil
	}
}

// WithServerKey makes a connecting pattern a CURVE client of servers
// holding the secret of key k (for WithConnect endpoints, and the only key
// accepted from discovered peers).
func WithServerKey(k socket.Key) Option {
	return func(o *options) error {
		if k.IsZero() {
			return optErr("WithServerKey: zero key")
		}
		o.used |= oCurve
		o.curve.on, o.curve.server = true, k
		return nil
	}
}

// WithTrust sets the trusted keys: on a pattern that binds, the only client
// keys let in; on one that discovers its peers, the only server keys it
// connects to. The set may change while the pattern runs.
func WithTrust(keys *socket.KeySet) Option {
	return func(o *options) error {
		if keys == nil {
			return optErr("WithTrust: nil key set")
		}
		o.used |= oCurve
		o.curve.on, o.curve.trust = true, keys
		return nil
	}
}

// WithAuthenticator has a pattern that binds check each connecting peer
// (see socket.Authenticator) after the mechanism's own checks.
func WithAuthenticator(a socket.Authenticator) Option {
	return func(o *options) error {
		if a == nil {
			return optErr("WithAuthenticator: nil")
		}
		o.used |= oCurve
		o.curve.auth = a
		return nil
	}
}

// curveOpts is what the CURVE options collected.
type curveOpts struct {
	on     bool
	key    socket.KeyPair
	server socket.Key
	trust  *socket.KeySet
	auth   socket.Authenticator
	client bool        // resolved: the pattern is a CURVE client
	keys   *ServerKeys // discovered server keys, by endpoint
}

// ServerKeys decides which discovered CURVE servers a client connects to,
// and remembers the key each announced, by endpoint, for the handshake
// (socket.WithCurveServerKeys(k.Lookup)). A pattern that is a CURVE client
// keeps one; the zpeer CLI's --discover with --key or --trust uses one too,
// so the rule is written once. It is safe for concurrent use.
type ServerKeys struct {
	server socket.Key     // when not zero, the only key admitted
	trust  *socket.KeySet // when not nil, the keys admitted

	mu sync.Mutex
	m  map[string]socket.Key // guarded by mu
}

// NewServerKeys returns a ServerKeys that admits a peer announcing server
// (when not zero) and, when trust is not nil, only keys in trust. With
// neither, every announced key is admitted.
func NewServerKeys(server socket.Key, trust *socket.KeySet) *ServerKeys {
	return &ServerKeys{server: server, trust: trust, m: make(map[string]socket.Key)}
}

// Admit checks the CURVE key discovered peer p announced for ep and, when
// it is admitted, records it for Lookup. A peer that announces no key, an
// unreadable key or an untrusted one gets an error wrapping
// discovery.ErrDeclined.
func (k *ServerKeys) Admit(p discovery.Peer, ep string) error {
	if p.Curve == "" {
		return fmt.Errorf("%w: %s announces no CURVE key", discovery.ErrDeclined, p.Instance)
	}
	key, err := socket.ParseKey(p.Curve)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", discovery.ErrDeclined, p.Instance, err)
	}
	if err := k.Check(key); err != nil {
		return fmt.Errorf("%w: %s: %w", discovery.ErrDeclined, p.Instance, err)
	}
	k.mu.Lock()
	k.m[ep] = key
	k.mu.Unlock()
	return nil
}

// Lookup returns the server key for ep: the key the discovered peer
// admitted for ep announced or, for another endpoint, the server key
// NewServerKeys was given. It has the signature socket.WithCurveServerKeys
// takes, and the socket calls it before every handshake, reconnections
// included: a key that is no longer admitted (taken out of the trust set)
// gives the zero key and true, so the socket does not connect to it again
// (and tries again, with backoff, in case it is trusted again).
func (k *ServerKeys) Lookup(ep string) (socket.Key, bool) {
	k.mu.Lock()
	key, ok := k.m[ep]
	k.mu.Unlock()
	if !ok {
		if k.server.IsZero() {
			return socket.Key{}, false
		}
		key = k.server
	}
	if k.Check(key) != nil {
		return socket.Key{}, true
	}
	return key, true
}

// Check reports whether a server holding key is to be connected to: it is
// the only key given (when one was), and it is in the trust set (when there
// is one) now.
func (k *ServerKeys) Check(key socket.Key) error {
	if !k.server.IsZero() && key != k.server {
		return fmt.Errorf("server key %s is not the one expected (%s)", key, k.server)
	}
	if k.trust != nil && !k.trust.Contains(key) {
		return fmt.Errorf("server key %s is not trusted", key)
	}
	return nil
}

// resolveCurve turns the CURVE options into socket options (placed before
// WithSocketOptions' so that those still win) and, for a server that
// announces, the TXT key. Like socket.New, it refuses a security option the
// pattern could not enforce.
func (o *options) resolveCurve() error {
	c := &o.curve
	if c.auth != nil && len(o.binds) == 0 {
		return optErr("WithAuthenticator: checks the peers that connect to a pattern that binds (WithBind); this one only connects")
	}
	if !c.on {
		if c.auth != nil {
			o.sockOpts = append([]socket.Option{socket.WithAuthenticator(c.auth)}, o.sockOpts...)
		}
		return nil
	}
	if c.key.IsZero() {
		kp, err := socket.NewKeyPair()
		if err != nil {
			return err
		}
		c.key = kp
	}
	var sopts []socket.Option
	if len(o.binds) > 0 {
		if !c.server.IsZero() {
			return optErr("WithServerKey: a pattern that binds is a CURVE server")
		}
		sopts = append(sopts, socket.WithCurveServer(c.key.Secret))
		if c.trust != nil {
			sopts = append(sopts, socket.WithTrust(c.trust))
		}
		if c.auth != nil {
			sopts = append(sopts, socket.WithAuthenticator(c.auth))
		}
		if o.service != "" {
			o.serviceOpts = append(o.serviceOpts, discovery.WithCurveKey(c.key.Public.String()))
		}
	} else {
		discovers := o.service != "" || o.watcher != nil || o.discovery != nil
		switch {
		case len(o.connects) > 0 && c.server.IsZero():
			return optErr("WithConnect: a CURVE client needs the server's key for its endpoints (WithServerKey)")
		case c.trust != nil && c.server.IsZero() && !discovers:
			return optErr("WithTrust: on a pattern that connects, it lists the server keys it connects to: give WithServerKey, or discover the servers (WithService, WithWatcher)")
		case c.trust != nil && !c.server.IsZero() && !c.trust.Contains(c.server):
			return optErr("WithServerKey %s is not in the WithTrust set: the pattern would never connect", c.server)
		}
		c.client = true
		c.keys = NewServerKeys(c.server, c.trust)
		// The server key comes from c.keys for every endpoint, WithConnect
		// ones too, so that the trust set is checked at every reconnect.
		sopts = append(sopts, socket.WithCurveClientKey(c.key), socket.WithCurveServerKeys(c.keys.Lookup))
	}
	o.sockOpts = append(sopts, o.sockOpts...)
	return nil
}

// curveConnector connects a CURVE client pattern to discovered peers with
// the key each announces, if it is trusted.
type curveConnector struct {
	Connector
	o *options
}

var _ discovery.PeerConnector = curveConnector{}

func (cc curveConnector) ConnectPeer(p discovery.Peer, ep string) error {
	if err := cc.o.curve.keys.Admit(p, ep); err != nil {
		level := slog.LevelWarn
		if p.Curve == "" {
			level = slog.LevelInfo
		}
		cc.o.logger.Log(context.Background(), level, "pattern: not connecting to a discovered peer", "peer", p.Instance, "endpoint", ep, "reason", err)
		return err
	}
	return cc.Connector.Connect(ep)
}
