package socket

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// Access control on the accepting side: the Go counterpart of libzmq's ZAP
// (RFC 27) without its inproc plumbing. Three checks run, in this order:
//
//  1. Address filters (WithAllow, WithDeny), right after the connection is
//     accepted, before any byte of it is read.
//  2. The handshake. A CURVE server checks the client's long-term key
//     against its trusted keys (WithTrust); a PLAIN server checks the user
//     table (WithPlainUsers).
//  3. The Authenticator (WithAuthenticator), which sees everything the
//     handshake learnt and may refuse with a reason.
//
// A refused peer is sent a ZMTP ERROR with the reason (except for address
// filters, which send nothing), counted in Stats.Rejected and reported as
// an EventRejected whose Err wraps ErrRefused.

// AuthRequest is what an Authenticator sees of a connecting peer.
type AuthRequest struct {
	Endpoint   string // the endpoint it connected through
	Remote     string // its network address ("10.0.0.7:51234")
	Mechanism  string // "NULL", "PLAIN" or "CURVE"
	SocketType Type   // this socket's type
	PeerType   string // the socket type it announced
	Identity   []byte // the identity it announced, if any
	ClientKey  Key    // CURVE: its long-term public key, proven by the handshake
	User       string // PLAIN: user name
	Password   string // PLAIN: password
}

// Authenticator decides whether a peer that completed the handshake's
// checks may connect. A nil error lets it in; any error refuses it, and the
// error's text is the reason sent to the peer and reported. It runs on the
// connection's own handshake goroutine, before the peer is attached: it
// must be safe for concurrent use and return promptly (the handshake
// timeout does not interrupt it).
type Authenticator interface {
	Authenticate(req *AuthRequest) error
}

// AuthFunc adapts a function to Authenticator.
type AuthFunc func(req *AuthRequest) error

// Authenticate calls f.
func (f AuthFunc) Authenticate(req *AuthRequest) error { return f(req) }

// KeySet is a set of trusted CURVE public keys, safe for concurrent use. As
// an Authenticator it lets in CURVE clients whose key is in the set and
// refuses everyone else.
type KeySet struct {
	mu      sync.RWMutex
	keys    map[Key]struct{}
	removed changeSignal // fired by Remove: the sockets trusting the set close the sessions of the keys removed
}

// NewKeySet returns a set holding keys.
func NewKeySet(keys ...Key) *KeySet {
	ks := &KeySet{keys: make(map[Key]struct{}, len(keys))}
	for _, k := range keys {
		ks.keys[k] = struct{}{}
	}
	return ks
}

// Add puts keys in the set.
func (ks *KeySet) Add(keys ...Key) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.keys == nil {
		ks.keys = make(map[Key]struct{})
	}
	for _, k := range keys {
		ks.keys[k] = struct{}{}
	}
}

// Remove takes keys out of the set. Every socket that trusts the set
// (WithTrust) closes the sessions of the keys removed at once; their next
// handshakes are refused.
func (ks *KeySet) Remove(keys ...Key) {
	ks.mu.Lock()
	for _, k := range keys {
		delete(ks.keys, k)
	}
	ks.mu.Unlock()
	ks.removed.fire()
}

// Replace makes the set hold exactly keys, and returns the keys it added and
// those it removed (a trust directory read again, say). The sessions of the
// keys removed are closed as by Remove.
func (ks *KeySet) Replace(keys ...Key) (added, removed []Key) {
	want := make(map[Key]struct{}, len(keys))
	for _, k := range keys {
		want[k] = struct{}{}
	}
	ks.mu.Lock()
	for k := range ks.keys {
		if _, ok := want[k]; !ok {
			removed = append(removed, k)
			delete(ks.keys, k)
		}
	}
	if ks.keys == nil {
		ks.keys = make(map[Key]struct{}, len(want))
	}
	for k := range want {
		if _, ok := ks.keys[k]; !ok {
			added = append(added, k)
			ks.keys[k] = struct{}{}
		}
	}
	ks.mu.Unlock()
	if len(removed) > 0 {
		ks.removed.fire()
	}
	return added, removed
}

// Contains reports whether k is in the set.
func (ks *KeySet) Contains(k Key) bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	_, ok := ks.keys[k]
	return ok
}

// Len returns the number of keys.
func (ks *KeySet) Len() int {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return len(ks.keys)
}

// Keys returns the keys, in no particular order.
func (ks *KeySet) Keys() []Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]Key, 0, len(ks.keys))
	for k := range ks.keys {
		out = append(out, k)
	}
	return out
}

// Authenticate lets in CURVE clients whose key is in the set.
func (ks *KeySet) Authenticate(req *AuthRequest) error {
	if req.Mechanism != "CURVE" {
		return fmt.Errorf("mechanism %s has no client key to trust", req.Mechanism)
	}
	if !ks.Contains(req.ClientKey) {
		return fmt.Errorf("client key %s is not trusted", req.ClientKey)
	}
	return nil
}

// PlainUsers is a PLAIN user table: user name to password. As an
// Authenticator it lets in PLAIN clients whose password matches.
type PlainUsers map[string]string

// Authenticate checks a PLAIN user's password (in constant time).
func (u PlainUsers) Authenticate(req *AuthRequest) error {
	if req.Mechanism != "PLAIN" {
		return fmt.Errorf("mechanism %s has no user to check", req.Mechanism)
	}
	want, ok := u[req.User]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(req.Password)) != 1 {
		return fmt.Errorf("user %q: bad user name or password", req.User)
	}
	return nil
}

// parsePrefixes reads CIDR prefixes ("10.0.0.0/8", "::1/128") or single
// addresses ("192.168.1.7", taken as /32 or /128).
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%w: address filter %q: %v", ErrOption, s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: address filter %q: %v", ErrOption, s, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// checkAddress applies the allow and deny lists to a remote address. Only
// IP peers are filtered: ipc:// peers have no address and pass.
func checkAddress(remote net.Addr, allow, deny []netip.Prefix) error {
	if len(allow) == 0 && len(deny) == 0 {
		return nil
	}
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return nil
	}
	a, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return fmt.Errorf("%w: address %s not understood", ErrRefused, remote)
	}
	a = a.Unmap()
	for _, p := range deny {
		if p.Contains(a) {
			return fmt.Errorf("%w: address %s is denied (%s)", ErrRefused, a, p)
		}
	}
	if len(allow) == 0 {
		return nil
	}
	for _, p := range allow {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: address %s is not in the allow list", ErrRefused, a)
}

// revokedError is why a session whose client key left the trusted keys is
// closed.
func revokedError(k Key) error {
	return fmt.Errorf("%w: client key %s was removed from the trusted keys", ErrRefused, k)
}

// watchTrust closes, each time keys leave the socket's trusted keys, the
// sessions of the clients whose key is no longer there. It runs for the
// socket's life when it has trusted keys (WithTrust).
func (s *Socket) watchTrust() {
	defer s.wg.Done()
	ks := s.opts.Trusted
	for {
		// Take the signal before looking: a removal while we look fires
		// it, and we look again.
		removed := ks.removed.wait()
		s.mu.Lock()
		var gone []*pipe
		for p := range s.pipes {
			if !ks.Contains(p.client) {
				gone = append(gone, p)
			}
		}
		s.mu.Unlock()
		for _, p := range gone {
			p.terminate(revokedError(p.client))
		}
		select {
		case <-removed:
		case <-s.closing:
			return
		}
	}
}
