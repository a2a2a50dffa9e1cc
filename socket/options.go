package socket

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Option configures a Socket. Options are applied in order by New; a nil
// option is skipped and the first error is returned.
type Option func(*Options) error

// Options holds a socket's settings. The zero value is not useful; New
// starts from DefaultOptions.
type Options struct {
	SendHWM          int           // messages queued per peer before it counts as full
	RecvHWM          int           // messages held per peer on the receiving side
	SendHWMBytes     int64         // ... or bytes queued per peer
	RecvHWMBytes     int64         // ... or bytes held per peer
	MaxMsgSize       int64         // largest accepted message (sum of frames), in bytes
	ReconnectMin     time.Duration // first re-dial delay
	ReconnectMax     time.Duration // cap of the exponential re-dial delay
	HeartbeatIvl     time.Duration // ZMTP PING interval; 0 disables heartbeats
	HeartbeatTimeout time.Duration // no traffic for this long drops the peer
	HandshakeTimeout time.Duration // greeting + security handshake deadline
	MaxHandshakes    int           // handshakes in progress on accepted connections (WithHandshakeLimits)
	MaxPerSource     int           // ... from one source address
	Linger           time.Duration // how long Close waits for queued messages
	NoBlock          bool          // Send fails with ErrWouldBlock instead of blocking
	RelaxedREQ       bool          // REQ may send again before the reply; replies are correlated
	Identity         []byte        // ZMTP identity announced to ROUTER peers
	Security         zmq4.Security // handshake mechanism (NULL by default; not with CURVE)
	// CURVE (see WithCurveServer, WithCurveClient): the role, this
	// socket's long-term key pair and, for a client, the server's key.
	CurveServer    bool
	CurveClient    bool
	CurveKey       KeyPair
	CurveServerKey Key                               // zero: every endpoint is connected with ConnectKey
	CurveKeyFor    func(endpoint string) (Key, bool) // per-endpoint server keys (WithCurveServerKeys)
	// Access control on accepted connections (see auth.go).
	Allow, Deny   []netip.Prefix
	Trusted       *KeySet       // CURVE server: the only client keys let in (nil: any)
	PlainUsers    PlainUsers    // PLAIN server: the user table (nil: any)
	Authenticator Authenticator // called last, after the mechanism's own checks
	Logger        *slog.Logger
	EventHandler  func(Event)
	EventBuffer   int
	Hooks         PeerHooks // called as peers attach, detach and get room to send
	MaxSubs       int       // PUB, XPUB: prefixes one peer may subscribe to
	MaxPrefix     int       // PUB, XPUB: bytes in one subscription prefix
	XPub          XPubOptions

	lowLatency *bool
}

// DefaultOptions returns the settings New starts from.
func DefaultOptions() Options {
	return Options{
		SendHWM:          1000,
		RecvHWM:          1000,
		SendHWMBytes:     32 << 20,
		RecvHWMBytes:     32 << 20,
		MaxMsgSize:       64 << 20,
		ReconnectMin:     100 * time.Millisecond,
		ReconnectMax:     5 * time.Second,
		HeartbeatIvl:     5 * time.Second,
		HeartbeatTimeout: 15 * time.Second,
		HandshakeTimeout: 5 * time.Second,
		MaxHandshakes:    DefaultHandshakes,
		MaxPerSource:     DefaultHandshakesPerSource,
		Linger:           time.Second,
		Logger:           slog.New(slog.DiscardHandler),
		EventBuffer:      256,
		MaxSubs:          10000,
		MaxPrefix:        4096,
	}
}

// WithSendHWM sets the per-peer send high-water mark, in messages (default
// 1000). A PUB drops for a peer at the mark; PUSH, REQ and DEALER skip the
// peer, and block when every peer is at its mark.
func WithSendHWM(n int) Option {
	return func(o *Options) error {
		if n < 1 {
			return fmt.Errorf("%w: send HWM %d: must be at least 1", ErrOption, n)
		}
		o.SendHWM = n
		return nil
	}
}

// WithRecvHWM sets the per-peer receive high-water mark, in messages
// (default 1000).
func WithRecvHWM(n int) Option {
	return func(o *Options) error {
		if n < 1 {
			return fmt.Errorf("%w: recv HWM %d: must be at least 1", ErrOption, n)
		}
		o.RecvHWM = n
		return nil
	}
}

// WithHWMBytes bounds the memory each peer's queues hold, in bytes of
// message bodies (default 32 MiB each way): a peer counts as full when it
// reaches its message high-water mark or this many bytes, whichever comes
// first. A queue always takes one message, however large, when it is empty.
func WithHWMBytes(send, recv int64) Option {
	return func(o *Options) error {
		if send < 1 || recv < 1 {
			return fmt.Errorf("%w: HWM bytes %d/%d: must be positive", ErrOption, send, recv)
		}
		o.SendHWMBytes, o.RecvHWMBytes = send, recv
		return nil
	}
}

// WithMaxMsgSize sets the largest message accepted from a peer or by Send
// (default 64 MiB). A peer announcing a larger frame is disconnected before
// anything is allocated for it.
func WithMaxMsgSize(n int64) Option {
	return func(o *Options) error {
		if n < 1 {
			return fmt.Errorf("%w: max message size %d: must be positive", ErrOption, n)
		}
		o.MaxMsgSize = n
		return nil
	}
}

// WithReconnect sets the re-dial backoff: the first delay and the cap
// (defaults 100ms and 5s). Each failure doubles the delay, with ±20% jitter.
func WithReconnect(min, max time.Duration) Option {
	return func(o *Options) error {
		if min <= 0 || max < min {
			return fmt.Errorf("%w: reconnect backoff %v..%v: need 0 < min <= max", ErrOption, min, max)
		}
		o.ReconnectMin, o.ReconnectMax = min, max
		return nil
	}
}

// WithHeartbeat sets the ZMTP PING interval and the silence after which a
// peer is dropped (defaults 5s and 15s). An interval of 0 disables PINGs and
// the timeout; PINGs from peers are always answered.
func WithHeartbeat(interval, timeout time.Duration) Option {
	return func(o *Options) error {
		if interval < 0 || (interval > 0 && timeout < interval) {
			return fmt.Errorf("%w: heartbeat %v/%v: need interval >= 0 and timeout >= interval", ErrOption, interval, timeout)
		}
		o.HeartbeatIvl, o.HeartbeatTimeout = interval, timeout
		return nil
	}
}

// WithHandshakeTimeout bounds the ZMTP greeting and handshake (default 5s):
// a peer that has not completed its handshake by then is disconnected.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *Options) error {
		if d <= 0 {
			return fmt.Errorf("%w: handshake timeout must be positive", ErrOption)
		}
		o.HandshakeTimeout = d
		return nil
	}
}

// WithHandshakeLimits bounds the handshakes in progress on accepted
// connections: at most perSource from one source address (an IPv4 address
// or an IPv6 /64; default 32) and total in all (default 256). A connection
// over a limit is closed as soon as it is accepted, before anything is
// read from it or any key work is done, and counted in Stats.Shed; when
// the total is reached, a connection from a source holding fewer
// handshakes than the busiest source takes the place of that source's
// oldest (docs/security.md, handshake floods). Each handshake also ends at
// its deadline (WithHandshakeTimeout). Dialled connections are not
// counted.
func WithHandshakeLimits(perSource, total int) Option {
	return func(o *Options) error {
		if perSource < 1 || total < perSource {
			return fmt.Errorf("%w: handshake limits %d per source, %d in all: need 1 <= per source <= total", ErrOption, perSource, total)
		}
		o.MaxPerSource, o.MaxHandshakes = perSource, total
		return nil
	}
}

// WithLinger sets how long Close keeps trying to write queued messages
// (default 1s; 0 discards them at once).
func WithLinger(d time.Duration) Option {
	return func(o *Options) error {
		if d < 0 {
			return fmt.Errorf("%w: linger must not be negative", ErrOption)
		}
		o.Linger = d
		return nil
	}
}

// WithNoBlock makes Send fail at once with ErrWouldBlock (or ErrNoPeers)
// instead of waiting for a ready peer.
func WithNoBlock() Option {
	return func(o *Options) error { o.NoBlock = true; return nil }
}

// WithIdentity sets the identity this socket announces in its ZMTP READY
// command; a ROUTER peer addresses this socket by it. At most 255 bytes, not
// starting with a zero byte (reserved for generated identities).
func WithIdentity(id []byte) Option {
	return func(o *Options) error {
		if len(id) == 0 || len(id) > 255 || id[0] == 0 {
			return fmt.Errorf("%w: identity must be 1..255 bytes and not start with 0x00", ErrOption)
		}
		o.Identity = append([]byte(nil), id...)
		return nil
	}
}

// WithSecurity sets the ZMTP security mechanism (zmq4's security/null or
// security/plain, or any zmq4.Security). The default is NULL.
func WithSecurity(sec zmq4.Security) Option {
	return func(o *Options) error {
		if sec == nil {
			return fmt.Errorf("%w: nil security", ErrOption)
		}
		o.Security = sec
		return nil
	}
}

// WithLogger sets the logger for connection-level events (the default
// discards). A peer this socket refuses (an address filter, an untrusted
// key, a bad password, another mechanism) and a session closed because its
// key was revoked are logged at Warn with the endpoint, the remote address
// and the reason; a refusal of this socket by its peer and other failed
// handshakes at Info. At most 10 such lines go out at once, then one a
// second; the next line says how many were held back ("suppressed").
func WithLogger(l *slog.Logger) Option {
	return func(o *Options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrOption)
		}
		o.Logger = l
		return nil
	}
}

// WithEventHandler registers a function called for every Event, in order, on
// a goroutine of its own (never on an I/O goroutine). A slow handler delays
// later events but loses none, up to 65536 waiting (then retry events go
// first, and what still does not fit is counted in Stats.EventsDropped).
func WithEventHandler(fn func(Event)) Option {
	return func(o *Options) error { o.EventHandler = fn; return nil }
}

// WithLowLatency chooses how queued messages reach the network. When on,
// Send writes on the caller's goroutine whenever the peer's queue is idle,
// saving a goroutine hand-off per message: the lowest latency for
// request/reply traffic. When off, a writer goroutine per peer coalesces
// everything queued since its last write into one system call: the highest
// throughput for streams. On by default for REQ and REP, off for the rest.
func WithLowLatency(on bool) Option {
	return func(o *Options) error { o.lowLatency = &on; return nil }
}

// WithRelaxedREQ lets a REQ socket send a new request while the previous
// reply is still outstanding (after a Recv timeout, say): the old request is
// abandoned. Each request then carries a 4-byte request id frame before the
// empty delimiter, which every RFC 28 REP echoes, so a late reply to an
// abandoned request is dropped instead of answering the new one. This is
// libzmq's ZMQ_REQ_RELAXED with ZMQ_REQ_CORRELATE. It has no effect on other
// socket types.
func WithRelaxedREQ() Option {
	return func(o *Options) error { o.RelaxedREQ = true; return nil }
}

// curve reports whether the socket speaks CURVE.
func (o *Options) curve() bool { return o.CurveServer || o.CurveClient }

// WithCurveServer makes the socket a CURVE server (RFC 26) with the
// long-term secret key sec: every connection, accepted or dialled, is
// encrypted, and peers must prove they know the server's public key. With
// no trusted keys (WithTrust) and no Authenticator, any client that
// completes the handshake is let in: that is encryption and server
// authentication, not client authentication (libzmq's CURVE_ALLOW_ANY).
// A CURVE socket never completes a NULL or PLAIN handshake.
func WithCurveServer(sec SecretKey) Option {
	return func(o *Options) error {
		if sec.IsZero() {
			return fmt.Errorf("%w: %w: CURVE server: zero secret key", ErrOption, ErrKey)
		}
		o.CurveServer, o.CurveClient, o.CurveKey, o.CurveServerKey = true, false, KeyPairFromSecret(sec), Key{}
		return nil
	}
}

// WithCurveClient makes the socket a CURVE client of the server whose
// long-term public key is server, proving itself with the key pair ours.
// A zero ours makes New generate a fresh key pair for the socket (enough
// for servers that let any client in). The handshake fails unless the peer
// holds server's secret key.
func WithCurveClient(server Key, ours KeyPair) Option {
	return func(o *Options) error {
		if server.IsZero() {
			return fmt.Errorf("%w: %w: CURVE client: zero server key", ErrOption, ErrKey)
		}
		if !ours.IsZero() && ours.Secret.Public() != ours.Public {
			return fmt.Errorf("%w: %w: CURVE client: the public key does not belong to the secret key", ErrOption, ErrKey)
		}
		o.CurveServer, o.CurveClient, o.CurveKey, o.CurveServerKey = false, true, ours, server
		return nil
	}
}

// WithCurveClientKey makes the socket a CURVE client with the key pair ours
// (zero: a fresh one) and no server key of its own: each endpoint is
// connected with ConnectKey, naming the key its server must hold (the key
// a discovered peer announced, say). Connect fails on such a socket.
func WithCurveClientKey(ours KeyPair) Option {
	return func(o *Options) error {
		if !ours.IsZero() && ours.Secret.Public() != ours.Public {
			return fmt.Errorf("%w: %w: CURVE client: the public key does not belong to the secret key", ErrOption, ErrKey)
		}
		o.CurveServer, o.CurveClient, o.CurveKey, o.CurveServerKey = false, true, ours, Key{}
		return nil
	}
}

// WithTrust lets in only CURVE clients whose long-term public key is in
// keys (a CURVE server's trust list). The set may change while the socket
// runs: it is consulted at each handshake, and a key removed from it
// (KeySet.Remove, KeySet.Replace) has its sessions closed at once. New
// fails (ErrOption) unless the socket is a CURVE server (WithCurveServer).
func WithTrust(keys *KeySet) Option {
	return func(o *Options) error {
		if keys == nil {
			return fmt.Errorf("%w: nil trusted key set", ErrOption)
		}
		o.Trusted = keys
		return nil
	}
}

// WithPlainUsers makes a PLAIN server (WithSecurity(plain.Security(...)))
// check each client's user name and password against users. New fails
// (ErrOption) on a socket that is not PLAIN, and Connect (ErrState) on one
// that has it: only the peers a socket accepts send it a user.
func WithPlainUsers(users PlainUsers) Option {
	return func(o *Options) error {
		if users == nil {
			return fmt.Errorf("%w: nil PLAIN user table", ErrOption)
		}
		o.PlainUsers = users
		return nil
	}
}

// WithAuthenticator has the peers a server accepts checked by a after the
// mechanism's own checks (see Authenticator): every connection of a CURVE
// server, the accepted ones of a NULL or PLAIN socket (NULL peers after
// their handshake). New fails (ErrOption) on a CURVE client, which has no
// clients to check, and Connect (ErrState) on a NULL or PLAIN socket that
// has one: the peer it dialled would not be checked.
func WithAuthenticator(a Authenticator) Option {
	return func(o *Options) error {
		if a == nil {
			return fmt.Errorf("%w: nil authenticator", ErrOption)
		}
		o.Authenticator = a
		return nil
	}
}

// WithAllow accepts TCP connections only from addresses in the given CIDR
// prefixes ("10.0.0.0/8") or single addresses, checked right after accept,
// before any byte is read. Repeated calls add to the list.
func WithAllow(cidrs ...string) Option {
	return func(o *Options) error {
		p, err := parsePrefixes(cidrs)
		if err != nil {
			return err
		}
		o.Allow = append(o.Allow, p...)
		return nil
	}
}

// WithDeny refuses TCP connections from addresses in the given CIDR
// prefixes or single addresses, checked right after accept (before the
// allow list). Repeated calls add to the list.
func WithDeny(cidrs ...string) Option {
	return func(o *Options) error {
		p, err := parsePrefixes(cidrs)
		if err != nil {
			return err
		}
		o.Deny = append(o.Deny, p...)
		return nil
	}
}

// WithCurveServerKeys gives a CURVE client socket (WithCurveClientKey) a
// function that names the server key for each endpoint it connects to (the
// keys discovered peers announced, say). ConnectKey's key, when given, wins.
// It is called by Connect and again before every handshake, reconnections
// included, so a key it stops trusting is not connected to again: for an
// endpoint it knows but will not connect to now, it returns the zero key
// and true (each attempt then fails with ErrKey and is retried with
// backoff); false means it has no key for the endpoint (then Connect fails
// unless WithCurveClient gave one). The function must be safe for
// concurrent use. New fails (ErrOption) on a socket that is not a CURVE
// client.
func WithCurveServerKeys(lookup func(endpoint string) (Key, bool)) Option {
	return func(o *Options) error {
		if lookup == nil {
			return fmt.Errorf("%w: nil CURVE server key lookup", ErrOption)
		}
		o.CurveKeyFor = lookup
		return nil
	}
}

// WithSubscriptionLimits bounds what one subscriber may ask a PUB or XPUB
// socket for: at most prefixes distinct prefixes (default 10000) of at most
// prefixBytes bytes each (default 4096). A subscription beyond either is
// dropped and counted in Stats.Discarded; the connection stays.
func WithSubscriptionLimits(prefixes, prefixBytes int) Option {
	return func(o *Options) error {
		if prefixes < 1 || prefixBytes < 0 {
			return fmt.Errorf("%w: subscription limits %d/%d: need at least 1 prefix and a non-negative size", ErrOption, prefixes, prefixBytes)
		}
		o.MaxSubs, o.MaxPrefix = prefixes, prefixBytes
		return nil
	}
}

// checkSecurity refuses the security options a socket of type t set up
// with o could not enforce: security fails closed, so an option that would
// be ignored is an error (wrapping ErrOption) that says what is missing.
func (o *Options) checkSecurity(t Type) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s socket: "+format, append([]any{ErrOption, t}, args...)...)
	}
	mech := "NULL"
	if o.Security != nil {
		mech = string(o.Security.Type())
	}
	switch {
	case o.curve() && o.Security != nil:
		return fail("WithSecurity(%s) and CURVE are exclusive", o.Security.Type())
	case o.CurveClient:
		mech = "CURVE client"
	case o.CurveServer:
		mech = "CURVE server"
	}
	if o.Trusted != nil && !o.CurveServer {
		return fail("WithTrust lists the client keys a CURVE server lets in, and this socket is a %s (add WithCurveServer; a CURVE client names its server with WithCurveClient)", mech)
	}
	if o.PlainUsers != nil && (o.curve() || o.Security == nil || o.Security.Type() != zmq4.PlainSecurity) {
		return fail("WithPlainUsers checks the users of a PLAIN server, and this socket is a %s (add WithSecurity(plain.Security(...)))", mech)
	}
	if o.Authenticator != nil && o.CurveClient {
		return fail("WithAuthenticator checks the peers of a server, and a CURVE client has none to check (it proves its server by the server key)")
	}
	if o.CurveKeyFor != nil && !o.CurveClient {
		return fail("WithCurveServerKeys names the servers of a CURVE client, and this socket is a %s (add WithCurveClientKey)", mech)
	}
	return nil
}

// checksAccepted reports whether the socket has access checks that only its
// accepted connections go through (a NULL or PLAIN socket's user table or
// Authenticator): a peer it dials would skip them. A CURVE server checks
// every connection, dialled or accepted.
func (o *Options) checksAccepted() string {
	switch {
	case o.CurveServer:
		return ""
	case o.PlainUsers != nil:
		return "WithPlainUsers"
	case o.Authenticator != nil && !o.CurveClient:
		return "WithAuthenticator"
	}
	return ""
}

// secured reports whether the socket has a mechanism other than NULL or a
// check of its peers, none of which an inproc connection (no handshake)
// goes through. (Address filters, like ipc://, let inproc peers pass: they
// have no address.)
func (o *Options) secured() bool {
	return o.curve() || (o.Security != nil && o.Security.Type() != zmq4.NullSecurity) ||
		o.Trusted != nil || o.PlainUsers != nil || o.Authenticator != nil
}
