package socket

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/go-zeromq/zmq4"
)

// peerInfo is what the handshake learnt about a peer, for its pipe.
type peerInfo struct {
	peerType string
	identity []byte
	curve    *curveCodec // non-nil on CURVE connections
	key      Key         // CURVE: the peer's long-term public key
}

// wipe clears the key material of a handshake's result that no pipe takes.
func (pi *peerInfo) wipe() {
	if pi.curve != nil {
		pi.curve.wipe()
	}
}

// openPeer runs the greeting and the security handshake on a new
// connection and the access checks that go with it. accepted says the
// connection came from a listener (address filters and the NULL/PLAIN
// checks apply to those only); zmtpServer is the ZMTP server role for zmq4.
func (s *Socket) openPeer(g *guardConn, c net.Conn, ep string, accepted, zmtpServer bool) (peerInfo, error) {
	if accepted {
		// Before any byte is read, and without a word to the peer.
		if err := checkAddress(c.RemoteAddr(), s.opts.Allow, s.opts.Deny); err != nil {
			return peerInfo{}, err
		}
	}
	if s.opts.curve() {
		return s.curveHandshake(g, c, ep, accepted)
	}
	sec := s.opts.Security
	plain := sec.Type() == zmq4.PlainSecurity && zmtpServer && accepted
	if plain && (s.opts.PlainUsers != nil || s.opts.Authenticator != nil) {
		sec = &plainServer{s: s, ep: ep, remote: c.RemoteAddr().String()}
	}
	zc, err := openZMTP(g, sec, s.typ.zmq(), s.opts.Identity, zmtpServer)
	if err != nil {
		var refused *refusal
		if errors.As(err, &refused) {
			return peerInfo{}, refused.err
		}
		// zmq4 says "invalid security mechanism" or "bad command": say
		// what the peer said instead.
		if theirs, ours := g.peerMechanism(), string(sec.Type()); theirs != "" && theirs != ours {
			(&hsIO{w: c}).sendError(mismatchReason(theirs, ours))
			return peerInfo{}, mismatchError(theirs, ours, accepted)
		}
		if perr := g.peerRefusal(); perr != nil {
			return peerInfo{}, perr
		}
		return peerInfo{}, err
	}
	pi := peerInfo{peerType: zc.Peer.Meta["Socket-Type"], identity: []byte(zc.Peer.Meta["Identity"])}
	if accepted && sec.Type() == zmq4.NullSecurity && s.opts.Authenticator != nil {
		// zmq4's NULL handshake has already sent READY: refuse now, with
		// an ERROR, before the pipe starts.
		req := &AuthRequest{Endpoint: ep, Remote: c.RemoteAddr().String(), Mechanism: "NULL", SocketType: s.typ, PeerType: pi.peerType, Identity: pi.identity}
		if err := s.authorize(req); err != nil {
			h := &hsIO{w: c}
			h.sendError(errorReason(err))
			return peerInfo{}, err
		}
	}
	return pi, nil
}

// authorize runs the access checks that follow a handshake: the trusted
// keys (CURVE), the user table (PLAIN), then the Authenticator.
func (s *Socket) authorize(req *AuthRequest) error {
	var err error
	switch {
	case req.Mechanism == "CURVE" && s.opts.Trusted != nil:
		err = s.opts.Trusted.Authenticate(req)
	case req.Mechanism == "PLAIN" && s.opts.PlainUsers != nil:
		err = s.opts.PlainUsers.Authenticate(req)
	}
	if err == nil && s.opts.Authenticator != nil {
		err = s.opts.Authenticator.Authenticate(req)
	}
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, err.Error())
	}
	return nil
}

// curveHandshake runs the greeting and the CURVE handshake in the role the
// socket's options give it (a CURVE server serves every connection, dialled
// or accepted, as in libzmq).
func (s *Socket) curveHandshake(g *guardConn, c net.Conn, ep string, accepted bool) (peerInfo, error) {
	var key Key
	if !s.opts.CurveServer {
		// The server's key is looked up again for every connection (a
		// WithCurveServerKeys lookup may have stopped trusting it), before
		// a byte is sent.
		s.mu.Lock()
		k, known := s.curveServerKey(ep)
		s.mu.Unlock()
		key = k
		switch {
		case !known:
			return peerInfo{}, fmt.Errorf("%w: no CURVE server key for %s (use ConnectKey)", ErrKey, ep)
		case k.IsZero():
			return peerInfo{}, fmt.Errorf("%w: %s: its server's key is not trusted now (WithCurveServerKeys): not connecting", ErrKey, ep)
		}
	}
	h := &hsIO{br: g.br, w: c}
	if err := h.exchangeGreeting("CURVE", s.opts.CurveServer); err != nil {
		if errors.Is(err, errMechanism) {
			theirs := string(bytes.TrimRight(h.buf[12:32], "\x00"))
			h.sendError(mismatchReason(theirs, "CURVE"))
			err = mismatchError(theirs, "CURVE", accepted)
		}
		return peerInfo{}, err
	}
	meta := ourMeta(nil, s.typ, s.opts.Identity)
	var (
		codec *curveCodec
		pm    zmtpMeta
		err   error
	)
	if s.opts.CurveServer {
		codec, pm, key, err = curveServer(h, &s.opts.CurveKey, meta, func(client Key, pm zmtpMeta) error {
			if !s.typ.Compatible(pm.socketType) {
				return fmt.Errorf("%w: peer socket type %q cannot talk to %s", ErrProtocol, pm.socketType, s.typ)
			}
			return s.authorize(&AuthRequest{Endpoint: ep, Remote: c.RemoteAddr().String(), Mechanism: "CURVE", SocketType: s.typ, PeerType: pm.socketType, Identity: pm.identity, ClientKey: client})
		})
	} else {
		codec, pm, err = curveClient(h, &key, &s.opts.CurveKey, meta)
		if err == nil && !s.typ.Compatible(pm.socketType) {
			err = fmt.Errorf("%w: peer socket type %q cannot talk to %s", ErrProtocol, pm.socketType, s.typ)
		}
	}
	if err != nil {
		return peerInfo{}, err
	}
	return peerInfo{peerType: pm.socketType, identity: pm.identity, curve: codec, key: key}, nil
}

// mismatchReason is the ERROR reason for a peer offering mechanism theirs
// to a socket speaking ours.
func mismatchReason(theirs, ours string) string {
	return fmt.Sprintf("%s: peer offers %q, this socket requires %s", errMechanism, theirs, ours)
}

// mismatchError is the error of a greeting whose mechanism is not ours. On
// a connection this socket accepted, it refuses the peer; on one it
// dialled, the peer it went to does not take it: a RefusedError.
func mismatchError(theirs, ours string, accepted bool) error {
	if accepted {
		return fmt.Errorf("%w: %s", ErrRefused, mismatchReason(theirs, ours))
	}
	return &RefusedError{Reason: fmt.Sprintf("%s: the peer speaks %s, this socket %s", errMechanism, theirs, ours)}
}

// refusal carries an access-control refusal through zmq4.Open, which wraps
// errors with %w.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// plainServer is the server side of the PLAIN mechanism (RFC 24) with the
// socket's user table and Authenticator: zmq4's PLAIN server lets every
// user in.
type plainServer struct {
	s          *Socket
	ep, remote string
}

func (*plainServer) Type() zmq4.SecurityType { return zmq4.PlainSecurity }

func (*plainServer) Encrypt(w io.Writer, data []byte) (int, error) { return w.Write(data) }
func (*plainServer) Decrypt(w io.Writer, data []byte) (int, error) { return w.Write(data) }

func (p *plainServer) Handshake(conn *zmq4.Conn, server bool) error {
	cmd, err := conn.RecvCmd()
	if err != nil {
		return err
	}
	if cmd.Name != zmq4.CmdHello {
		return fmt.Errorf("%w: PLAIN: expected HELLO, got %q", ErrProtocol, cmd.Name)
	}
	b := cmd.Body
	if len(b) < 1 || int(b[0]) > len(b)-2 || int(b[1+b[0]]) != len(b)-2-int(b[0]) {
		return fmt.Errorf("%w: PLAIN: malformed HELLO", ErrProtocol)
	}
	user := string(b[1 : 1+b[0]])
	pass := string(b[2+b[0]:])
	req := &AuthRequest{Endpoint: p.ep, Remote: p.remote, Mechanism: "PLAIN", SocketType: p.s.typ, User: user, Password: pass}
	if err := p.s.authorize(req); err != nil {
		reason := errorReason(err)
		if len(reason) > 255 {
			reason = reason[:255]
		}
		conn.SendCmd(zmq4.CmdError, append([]byte{byte(len(reason))}, reason...))
		return &refusal{err}
	}
	if err := conn.SendCmd(zmq4.CmdWelcome, nil); err != nil {
		return err
	}
	cmd, err = conn.RecvCmd()
	if err != nil {
		return err
	}
	if cmd.Name != zmq4.CmdInitiate {
		return fmt.Errorf("%w: PLAIN: expected INITIATE, got %q", ErrProtocol, cmd.Name)
	}
	if err := conn.Peer.Meta.UnmarshalZMTP(cmd.Body); err != nil {
		return fmt.Errorf("%w: PLAIN: metadata: %v", ErrProtocol, err)
	}
	raw, err := conn.Meta.MarshalZMTP()
	if err != nil {
		return err
	}
	return conn.SendCmd(zmq4.CmdReady, raw)
}

// ConnectKey is Connect for a CURVE client socket, naming the long-term
// public key the server at ep must hold (it overrides the socket's
// WithCurveClient key for this endpoint). The handshake with ep fails, and
// is retried with backoff, while the peer there cannot prove it holds the
// key's secret.
func (s *Socket) ConnectKey(ep string, server Key) error {
	if !s.opts.CurveClient {
		return fmt.Errorf("%w: ConnectKey on a socket that is not a CURVE client", ErrState)
	}
	if server.IsZero() {
		return fmt.Errorf("%w: ConnectKey %s: zero server key", ErrKey, ep)
	}
	s.mu.Lock()
	if s.curveKeys == nil {
		s.curveKeys = make(map[string]Key)
	}
	_, dup := s.dialers[ep]
	if !dup {
		s.curveKeys[ep] = server
	}
	s.mu.Unlock()
	if err := s.Connect(ep); err != nil {
		if !dup {
			s.mu.Lock()
			delete(s.curveKeys, ep)
			s.mu.Unlock()
		}
		return err
	}
	return nil
}

// CurvePublicKey returns the socket's long-term CURVE public key (the one
// to announce or hand to clients), or false when it does not speak CURVE.
func (s *Socket) CurvePublicKey() (Key, bool) {
	return s.opts.CurveKey.Public, s.opts.curve()
}

// curveServerKey is the key the server at ep must hold: ConnectKey's, else
// the WithCurveServerKeys lookup's, else WithCurveClient's. known is false
// when none names a key for ep; a lookup may know ep and still give the
// zero key (not to be connected now). s.mu is held.
func (s *Socket) curveServerKey(ep string) (key Key, known bool) {
	if k, ok := s.curveKeys[ep]; ok {
		return k, true
	}
	if s.opts.CurveKeyFor != nil {
		if k, ok := s.opts.CurveKeyFor(ep); ok {
			return k, true
		}
	}
	return s.opts.CurveServerKey, !s.opts.CurveServerKey.IsZero()
}

// logf logs event about a peer's connection at level, with the reason err
// gives, through the socket's rate limit (see internal/eventlog).
func (s *Socket) logf(level slog.Level, event, ep, remote string, err error) {
	if !s.log.Enabled(level) {
		return
	}
	reason := errorReason(err)
	var byPeer *RefusedError
	if errors.As(err, &byPeer) {
		reason = byPeer.Reason
	}
	s.log.Log(level, event, "endpoint", ep, "remote", remote, "reason", reason)
}
