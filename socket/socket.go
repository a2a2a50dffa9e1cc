package socket

import (
	"context"
	"errors"
	"fmt"
	"github.com/zpeer/zpeer/internal/eventlog"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4/security/null"
)

var errAbort = errors.New("socket: aborted")

// protocol is the behaviour of one socket type (libzmq's socket_base_t
// subclasses, mangos' protocols): how it routes what is sent, what it
// does with what is received, and how it tracks its peers.
type protocol interface {
	attach(p *pipe)
	detach(p *pipe)
	send(ctx context.Context, m Msg) error
	// recv returns the next message for the caller and the pipe it came
	// from.
	recv(ctx context.Context) (Msg, *pipe, error)
	// incoming runs on the pipe's reader goroutine for every message; it
	// returns the message to queue for Recv, or false to consume it.
	incoming(p *pipe, m Msg) (Msg, bool)
	// command handles SUBSCRIBE and CANCEL commands.
	command(p *pipe, name string, data []byte)
}

// The fast paths Send, Recv and inproc hand-over take when a protocol says,
// beside the method it describes, that the method is the plain one.
type (
	// popRecv: recv is s.pop, so Recv pops straight from the fair queue.
	popRecv interface{ recvIsPop() }
	// lbSend: send is sendLB's send with no hook, so Send calls it
	// straight, without the indirect call.
	lbSend interface{ sendLB() *lb }
	// passIncoming: incoming passes every message as it is, so an inproc
	// sender need not call it.
	passIncoming interface{ incomingPasses() }
)

// admitter is implemented by the protocols of the socket types that refuse
// some peers (PAIR has one). admit runs before the pipe is registered,
// holding the socket's mu; a refused peer is closed and counted as
// rejected.
type admitter interface {
	admit(p *pipe) error
}

// idAssigner is implemented by the protocols that address peers by an id
// of their own (ROUTER): the id is assigned before the Attach hook runs.
type idAssigner interface {
	assignID(p *pipe)
}

// peerSender is implemented by the protocols of the socket types that can
// send to a chosen peer (Socket.SendTo).
type peerSender interface {
	sendTo(ctx context.Context, p *pipe, m Msg) error
}

// Socket is a ZeroMQ socket of one type. All methods are safe for
// concurrent use; Close is idempotent.
type Socket struct {
	typ        Type
	opts       Options
	proto      protocol
	plainRecv  bool // proto.recv is pop: Recv pops straight from fq
	plainSend  *lb  // proto.send is this lb's send: Send calls it straight
	fq         *fairQueue
	ev         *events
	lowLatency bool

	// The connections, guarded by mu.
	mu        sync.Mutex
	pipes     map[*pipe]struct{}
	listeners map[string]*listener
	dialers   map[string]*dialer
	shaking   map[net.Conn]struct{} // connections in the handshake
	curveKeys map[string]Key        // CURVE server keys per endpoint (ConnectKey)
	closed    bool
	// closedFlag mirrors closed for Send's check, which takes no lock.
	closedFlag atomic.Bool

	readyMu sync.Mutex
	readyCh chan struct{} // guarded by readyMu: closed at the next signalReady

	subsChanged changeSignal // fired when a peer's subscriptions change

	closing chan struct{}
	wg      sync.WaitGroup

	adm admission // handshakes in progress on accepted connections

	stats                             counters
	connects, disconnects, reconnects atomic.Uint64
	rejected                          rejections
	refused                           atomic.Uint64
	log                               *eventlog.Logger // opts.Logger, rate-limited
	peerIDs                           atomic.Uint64    // the last Peer.ID given

	// dialWrap, when set (by tests, before Connect), wraps each dialled
	// connection.
	dialWrap func(net.Conn) net.Conn
}

type listener struct {
	ep       endpoint
	bound    string
	ln       net.Listener
	accepted map[*pipe]struct{} // guarded by the socket's mu
}

type dialer struct {
	ep     endpoint
	stop   chan struct{}
	ctx    context.Context // cancelled with stop, to abort a dial in progress
	cancel context.CancelFunc
	pipe   *pipe // guarded by the socket's mu: the current connection
	// leaving is set by Disconnect before it ends the pipe: the loop must
	// not dial again when it sees the pipe end (inproc would at once).
	leaving atomic.Bool
}

func (d *dialer) halt() {
	close(d.stop)
	d.cancel()
}

// New creates a socket of type t.
func New(t Type, opts ...Option) (*Socket, error) {
	if !t.valid() {
		return nil, fmt.Errorf("%w: unknown socket type %d", ErrOption, t)
	}
	o, err := buildOptions(t, opts)
	if err != nil {
		return nil, err
	}
	s := &Socket{
		typ:       t,
		opts:      o,
		pipes:     make(map[*pipe]struct{}),
		listeners: make(map[string]*listener),
		dialers:   make(map[string]*dialer),
		shaking:   make(map[net.Conn]struct{}),
		readyCh:   make(chan struct{}),
		closing:   make(chan struct{}),
		log:       eventlog.New(o.Logger),
	}
	s.fq = newFairQueue(o.RecvHWM, o.RecvHWMBytes, s.closing)
	s.ev = newEvents(o.EventHandler, o.EventBuffer)
	if o.Trusted != nil {
		s.wg.Add(1)
		go s.watchTrust()
	}
	s.proto = newProto(s, t)
	_, s.plainRecv = s.proto.(popRecv)
	if r, ok := s.proto.(lbSend); ok {
		s.plainSend = r.sendLB()
	}
	s.lowLatency = t == REQ || t == REP
	if o.lowLatency != nil {
		s.lowLatency = *o.lowLatency
	}
	return s, nil
}

// buildOptions applies opts in order to the defaults, skipping nil ones,
// checks the security they ask of a socket of type t, and completes it: a
// CURVE socket without a key pair gets a fresh one, a socket without
// security NULL.
func buildOptions(t Type, opts []Option) (Options, error) {
	o := DefaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			if !errors.Is(err, ErrOption) { // the contract, for an option written elsewhere
				err = fmt.Errorf("%w: %w", ErrOption, err)
			}
			return Options{}, err
		}
	}
	if err := o.checkSecurity(t); err != nil {
		return Options{}, err
	}
	if o.curve() {
		if o.CurveKey.IsZero() {
			kp, err := NewKeyPair()
			if err != nil {
				return Options{}, err
			}
			o.CurveKey = kp
		}
	} else if o.Security == nil {
		o.Security = null.Security()
	}
	return o, nil
}

// newProto returns the routing of socket type t for s.
func newProto(s *Socket, t Type) protocol {
	switch t {
	case PUSH:
		return &pushProto{lb: lb{s: s}}
	case PULL:
		return &pullProto{s: s}
	case PUB:
		return newPubProto(s)
	case SUB:
		return newSubProto(s)
	case REQ:
		return newReqProto(s)
	case REP:
		return newRepProto(s)
	case DEALER:
		return &dealerProto{lb: lb{s: s}}
	case ROUTER:
		return newRouterProto(s)
	case PAIR:
		return &pairProto{s: s}
	case XPUB:
		return newXPubProto(s)
	case XSUB:
		return newXSubProto(s)
	}
	panic(fmt.Sprintf("socket: no protocol for type %d", t)) // t.valid() was checked
}

// Type returns the socket's type.
func (s *Socket) Type() Type { return s.typ }

// Events returns a channel of connection events. It is buffered; events
// that find it full are dropped and counted in Stats.EventsDropped. It is
// never closed.
func (s *Socket) Events() <-chan Event { return s.ev.ch }

// Bind listens on ep and returns the endpoint actually bound (with the real
// port when ep asked for port 0 or *).
func (s *Socket) Bind(ep string) (string, error) {
	e, err := parseEndpoint(ep, true)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if e.network == "inproc" {
		if s.opts.secured() {
			return "", fmt.Errorf("%w %q: inproc has no handshake, so this socket's security options cannot apply to it", ErrEndpoint, ep)
		}
		return s.bindInproc(e)
	}
	if e.network == "unix" {
		// Like libzmq, take over a stale socket file.
		if fi, err := os.Lstat(e.addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(e.addr)
		}
	}
	ln, err := net.Listen(e.network, e.addr)
	if err != nil {
		return "", fmt.Errorf("socket: bind %s: %w", ep, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	l := &listener{ep: e, bound: boundEndpoint(e, ln.Addr()), ln: ln, accepted: make(map[*pipe]struct{})}
	s.listeners[l.bound] = l
	s.wg.Add(1)
	go s.acceptLoop(l)
	s.ev.emit(Event{Kind: EventListening, Endpoint: l.bound})
	return l.bound, nil
}

// Unbind stops listening on ep (as given to Bind or as Bind returned it) and
// closes the connections accepted there.
func (s *Socket) Unbind(ep string) error {
	s.mu.Lock()
	l := s.listeners[ep]
	if l == nil {
		for _, cand := range s.listeners {
			if cand.ep.raw == ep {
				l = cand
				break
			}
		}
	}
	if l == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w %q: not bound", ErrEndpoint, ep)
	}
	delete(s.listeners, l.bound)
	var ps []*pipe
	for p := range l.accepted {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	l.ln.Close()
	for _, p := range ps {
		p.terminate(fmt.Errorf("socket: unbound %s", ep))
	}
	return nil
}

// Connect starts connecting to ep and returns at once: the peer need not be
// up yet. The endpoint is re-dialled with exponential backoff whenever the
// connection fails or drops, until Disconnect or Close. Connecting twice to
// the same endpoint is an error.
func (s *Socket) Connect(ep string) error {
	e, err := parseEndpoint(ep, false)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if opt := s.opts.checksAccepted(); opt != "" {
		return fmt.Errorf("%w: Connect %s: %s checks the peers this %s socket accepts (Bind), and a peer it dials would not be checked", ErrState, ep, opt, s.typ)
	}
	if e.network == "inproc" && s.opts.secured() {
		return fmt.Errorf("%w %q: inproc has no handshake, so this socket's security options cannot apply to it", ErrEndpoint, ep)
	}
	if _, known := s.curveServerKey(ep); s.opts.CurveClient && !known {
		return fmt.Errorf("%w: %s: this CURVE client has no server key (use ConnectKey)", ErrKey, ep)
	}
	if _, dup := s.dialers[ep]; dup {
		return fmt.Errorf("%w %q: already connected", ErrEndpoint, ep)
	}
	d := &dialer{ep: e, stop: make(chan struct{})}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	s.dialers[ep] = d
	s.wg.Add(1)
	if e.network == "inproc" {
		go s.inprocDialLoop(d)
	} else {
		go s.dialLoop(d)
	}
	return nil
}

// Disconnect stops re-dialling ep and closes its connection. Messages its
// peer had sent before are not lost: Disconnect stops sending to the peer,
// reads out what had already arrived on the connection (as far as the
// receive queue has room), and returns once the peer is detached; those
// messages stay readable with Recv.
func (s *Socket) Disconnect(ep string) error {
	s.mu.Lock()
	d := s.dialers[ep]
	if d == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w %q: not connected", ErrEndpoint, ep)
	}
	delete(s.dialers, ep)
	delete(s.curveKeys, ep)
	p := d.pipe
	s.mu.Unlock()
	d.leaving.Store(true)
	if p != nil {
		// before halting the dialer, which would end p as closed
		p.startLeaving(fmt.Errorf("socket: disconnected %s", ep))
	}
	d.halt()
	if p != nil {
		<-p.ended
	}
	return nil
}

// Send sends one message according to the socket type's routing. It blocks
// (see the package documentation for which types block and when) until the
// message is queued for a peer, ctx ends, or the socket closes.
func (s *Socket) Send(ctx context.Context, m Msg) error {
	return s.send(ctx, &m) // small enough to inline: m stays in the caller's frame
}

func (s *Socket) send(ctx context.Context, m *Msg) error {
	if err := s.checkSend(m); err != nil {
		return err
	}
	if l := s.plainSend; l != nil {
		_, err := l.send(ctx, m, nil)
		return err
	}
	if r, ok := s.proto.(*pubProto); ok {
		return r.send(ctx, *m)
	}
	return s.proto.send(ctx, heapMsg(m))
}

// heapMsg is *m with its array of frames copied to the heap, for a socket
// type's send method: a message passed through an interface method
// escapes, and were the caller's array to escape with it, every Send of a
// Msg{Frames: [][]byte{b}} built at the call would allocate it, on the
// paths that call no interface method (PUSH, DEALER, PUB) too. The Buffer
// and the owner it refers to are on the heap already (see heapBuffer), so
// they are passed on hidden from the escape analysis.
func heapMsg(m *Msg) Msg {
	fs := make([][]byte, len(m.Frames))
	copy(fs, m.Frames)
	return Msg{Frames: fs, Priority: m.Priority, Buf: heapBuffer(m.Buf), gen: m.gen, size: m.size, mem: heapPtr(m.mem)}
}

// checkSend is what Send and SendTo check before routing m.
func (s *Socket) checkSend(m *Msg) error {
	if m.freed() {
		m.checkLive()
		return ErrFreed
	}
	if len(m.Frames) == 0 {
		return ErrEmpty
	}
	if size := m.Size(); int64(size) > s.opts.MaxMsgSize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, size, s.opts.MaxMsgSize)
	}
	if len(m.Frames) > maxFrames {
		return fmt.Errorf("%w: %d frames (limit %d)", ErrTooLarge, len(m.Frames), maxFrames)
	}
	if s.isClosed() {
		return ErrClosed
	}
	return nil
}

// SendBytes sends a one-frame message.
func (s *Socket) SendBytes(ctx context.Context, b []byte) error {
	return s.Send(ctx, Msg{Frames: [][]byte{b}})
}

// Recv returns the next message, fair-queued over peers. It blocks until a
// message arrives, ctx ends, or the socket closes; messages already received
// are still returned after Close. A message already waiting is returned
// even when ctx is done, so Recv with a cancelled context polls: it returns
// a message or ctx's error at once.
func (s *Socket) Recv(ctx context.Context) (m Msg, err error) {
	// Small enough to inline: the message is written once, in the
	// caller's frame, not copied out through the results (8 words).
	err = s.recvInto(ctx, &m)
	return m, err
}

func (s *Socket) recvInto(ctx context.Context, m *Msg) (err error) {
	if s.plainRecv {
		_, err = s.fq.popInto(ctx, nil, m)
		return err
	}
	*m, _, err = s.proto.recv(ctx)
	return err
}

// Subscribe adds a topic prefix on a SUB socket ("" receives everything). It
// is sent to every connected publisher and to every one that connects later.
// On an XSUB socket it sends the subscription message for prefix (see
// XSUB). On an XPUB socket with WithXPubManual it subscribes the peer whose
// subscription message Recv returned last, as libzmq's ZMQ_XPUB_MANUAL does
// (SubscribePeer names the peer instead). Other types fail with ErrState.
func (s *Socket) Subscribe(prefix string) error {
	return s.subscribe(prefix, true)
}

// Unsubscribe removes a prefix added by Subscribe.
func (s *Socket) Unsubscribe(prefix string) error {
	return s.subscribe(prefix, false)
}

func (s *Socket) subscribe(prefix string, on bool) error {
	switch r := s.proto.(type) {
	case *subProto:
		return r.subscribe(prefix, on)
	case *xsubProto:
		return r.sendAs(context.Background(), subMsg(prefix, on), true)
	case *xpubProto:
		return r.subscribeLast(prefix, on)
	}
	op := "Subscribe"
	if !on {
		op = "Unsubscribe"
	}
	return fmt.Errorf("%w: %s on a %s socket", ErrState, op, s.typ)
}

// Peers returns the number of connected peers.
func (s *Socket) Peers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pipes)
}

// Endpoints returns the bound endpoints (as Bind returned them).
func (s *Socket) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var eps []string
	for ep := range s.listeners {
		eps = append(eps, ep)
	}
	return eps
}

// Stats returns a snapshot of the socket's counters.
func (s *Socket) Stats() Stats {
	s.mu.Lock()
	ps := make([]PeerStats, 0, len(s.pipes))
	for p := range s.pipes {
		ps = append(ps, p.peerStats())
	}
	totals := s.stats.snapshot()
	s.mu.Unlock()
	st := Stats{
		Peers:         len(ps),
		Connects:      s.connects.Load(),
		Disconnects:   s.disconnects.Load(),
		Reconnects:    s.reconnects.Load(),
		Rejected:      s.rejected.total(),
		RejectedBy:    s.rejected.snapshot(),
		Refused:       s.refused.Load(),
		EventsDropped: s.ev.dropped.Load(),
		Shed:          s.adm.shed.Load(),
		PerPeer:       ps,
	}
	// Per-socket message counters are the sum over pipes alive and gone.
	st.Counters = totals
	for _, p := range ps {
		st.MsgsIn += p.MsgsIn
		st.MsgsOut += p.MsgsOut
		st.BytesIn += p.BytesIn
		st.BytesOut += p.BytesOut
	}
	return st
}

// Flush waits until every message queued so far for the socket's peers has
// been written to its connection (handed to the kernel: not a proof of
// delivery), or its peer is gone. A sender that keeps queueing meanwhile
// may delay it: it returns when each peer's queue has been empty once. It
// fails with ctx's error, or ErrClosed when the socket is closed. Inproc
// peers take each message in Send: nothing waits for them.
func (s *Socket) Flush(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	ps := slices.Collect(maps.Keys(s.pipes))
	s.mu.Unlock()
	for _, p := range ps {
		ch := p.flushed()
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-p.done:
		case <-s.closing:
			return ErrClosed
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
	return nil
}

// Close stops listening and dialling, gives queued messages up to the linger
// time to be written, closes every connection and waits for the socket's
// goroutines to end. Blocked Send and Recv calls return ErrClosed. Close is
// idempotent.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.closedFlag.Store(true)
	for _, l := range s.listeners {
		l.ln.Close()
	}
	ds := s.dialers
	for c := range s.shaking {
		c.Close() // do not wait out a stalled handshake's timeout
	}
	s.listeners, s.dialers = map[string]*listener{}, map[string]*dialer{}
	ps := slices.Collect(maps.Keys(s.pipes))
	s.mu.Unlock()

	deadline := time.Now().Add(s.opts.Linger)
	for _, p := range ps {
		p.drain(deadline)
	}
	// Only now stop the dialers: a dialer ends its connection when stopped,
	// which would throw away what the linger time is for.
	for _, d := range ds {
		d.halt()
	}
	close(s.closing)
	for _, p := range ps {
		p.terminate(ErrClosed)
	}
	s.wg.Wait()
	// No handshake runs any more: forget the socket's copy of its
	// long-term secret (docs/security.md, key hygiene).
	clear(s.opts.CurveKey.Secret[:])
	s.ev.close()
	s.subsChanged.fire()
	return nil
}

// SubscriptionsChanged returns a channel that is closed at the next change
// of a peer's subscriptions (PUB and XPUB), when a peer goes, and when the
// socket closes. Take it before looking at Stats, then wait on it: a
// change between the look and the wait is not missed. Publisher's
// WaitSubscribers waits this way.
func (s *Socket) SubscriptionsChanged() <-chan struct{} {
	return s.subsChanged.wait()
}

// changeSignal wakes those waiting for something to change. It makes a
// channel only when someone waits, so a flood of changes with no one
// waiting costs a lock each and allocates nothing.
type changeSignal struct {
	mu sync.Mutex
	ch chan struct{} // guarded by mu: nil while no one waits
}

func (c *changeSignal) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changeSignal) fire() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

func (s *Socket) isClosed() bool {
	return s.closedFlag.Load()
}

func (s *Socket) acceptLoop(l *listener) {
	defer s.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, retry.
			s.log.Log(slog.LevelWarn, eventlog.AcceptFailed, "endpoint", l.bound, "reason", errorReason(err))
			select {
			case <-time.After(delay):
			case <-s.closing:
				return
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		sl, ok := s.adm.admit(c, s.opts.MaxPerSource, s.opts.MaxHandshakes)
		if !ok {
			c.Close() // unread: no key work for a connection over the limits
			if now := time.Now(); s.adm.shouldWarn(now) {
				s.log.Log(slog.LevelWarn, eventlog.Shed, "endpoint", l.bound, "remote", c.RemoteAddr().String(), "shed", s.adm.shed.Load())
			}
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			// handshake registers the pipe with l, or refuses it if l
			// was unbound or the socket closed meanwhile.
			s.handshake(c, l.bound, l, sl)
		}()
	}
}

func (s *Socket) dialLoop(d *dialer) {
	defer s.wg.Done()
	delay := s.opts.ReconnectMin
	first := true
	var nd net.Dialer
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		if !first {
			s.reconnects.Add(1)
		}
		first = false
		ctx, cancel := context.WithTimeout(d.ctx, s.opts.HandshakeTimeout)
		c, err := nd.DialContext(ctx, d.ep.network, d.ep.addr)
		cancel()
		var p *pipe
		if err == nil && s.dialWrap != nil {
			c = s.dialWrap(c)
		}
		if err == nil {
			p, err = s.handshake(c, d.ep.raw, nil, nil)
		} else {
			s.ev.emit(Event{Kind: EventRetry, Endpoint: d.ep.raw, Err: err})
		}
		if err == nil {
			s.mu.Lock()
			select {
			case <-d.stop:
				s.mu.Unlock()
				p.terminate(ErrClosed)
				return
			default:
			}
			d.pipe = p
			s.mu.Unlock()
			delay = s.opts.ReconnectMin
			select {
			case <-p.done:
				if d.leaving.Load() {
					return // Disconnect: no redial
				}
			case <-d.stop:
				// Disconnect, or Close: what had arrived stays readable
				// (a Close ends the pipe anyway).
				p.leave(ErrClosed)
				return
			}
		}
		// back off with ±20% jitter
		j := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
		t := time.NewTimer(j)
		select {
		case <-t.C:
		case <-d.stop:
			t.Stop()
			return
		}
		delay = min(2*delay, s.opts.ReconnectMax)
	}
}

// handshake runs the ZMTP greeting and security handshake through zmq4 over
// a guarded connection, then starts a pipe for the peer.
// sl is the accepted connection's admission slot (nil for a dialled one),
// given back as the handshake ends.
func (s *Socket) handshake(c net.Conn, ep string, l *listener, sl *hsSlot) (*pipe, error) {
	return s.handshakeAs(c, ep, l != nil, l, sl)
}

// handshakeAs is handshake with the ZMTP server role chosen apart from the
// listener (for tests that drive a raw connection).
func (s *Socket) handshakeAs(c net.Conn, ep string, server bool, l *listener, sl *hsSlot) (*pipe, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	g := newGuardConn(c)
	pi, err := s.secure(g, c, ep, server, l, sl)
	if err != nil {
		return nil, err // c is closed, the rejection counted and told
	}
	p := newPipe(s, c, g.br, g.src, pi, ep)
	if err := s.register(p, l); err != nil {
		return nil, err
	}
	s.connected(p)
	return p, nil
}

// secure runs the greeting and security handshake on c within the
// handshake timeout, as one of the connections Close ends while they
// shake hands. A failed handshake closes c and is counted, logged and
// emitted as a rejection.
func (s *Socket) secure(g *guardConn, c net.Conn, ep string, server bool, l *listener, sl *hsSlot) (peerInfo, error) {
	c.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return peerInfo{}, ErrClosed
	}
	s.shaking[c] = struct{}{}
	s.mu.Unlock()
	pi, err := s.openPeer(g, c, ep, l != nil, server)
	if sl != nil {
		// Before clearing the deadline: a connection whose slot was
		// taken (and which was closed) fails here, not as a pipe.
		s.adm.release(sl)
	}
	if err == nil {
		err = c.SetDeadline(time.Time{})
	}
	s.mu.Lock()
	delete(s.shaking, c)
	closed := s.closed
	s.mu.Unlock()
	if closed {
		c.Close()
		pi.wipe()
		return peerInfo{}, ErrClosed
	}
	if err != nil {
		c.Close()
		s.rejectHandshake(ep, c.RemoteAddr().String(), err)
		return peerInfo{}, err
	}
	return pi, nil
}

// rejectHandshake counts a failed handshake, logs it at the level its
// cause deserves and emits EventRejected.
func (s *Socket) rejectHandshake(ep, remote string, err error) {
	s.rejected.count(err)
	var byPeer *RefusedError
	switch {
	case errors.As(err, &byPeer):
		// The caller learns of it from Stats, the event and the
		// errors that explain why no peer is there: not a warning.
		s.refused.Add(1)
		s.logf(slog.LevelInfo, eventlog.RefusedByPeer, ep, remote, err)
	case errors.Is(err, ErrRefused):
		// The only trace a refused peer leaves on this side.
		s.logf(slog.LevelWarn, eventlog.HandshakeRefused, ep, remote, err)
	default:
		event := eventlog.HandshakeFailed
		if errors.Is(err, ErrProtocol) || errors.Is(err, ErrTooLarge) {
			event = eventlog.ProtocolError
		}
		s.logf(slog.LevelInfo, event, ep, remote, err)
	}
	s.ev.emit(Event{Kind: EventRejected, Endpoint: ep, Remote: remote, Err: err})
}

// register adds a handshaken pipe to the socket and to its listener l
// (nil for a dialled one), unless the socket closed, l was unbound, the
// peer's key stopped being trusted or the socket type does not admit it
// meanwhile: then p's connection is closed and the error returned.
func (s *Socket) register(p *pipe, l *listener) error {
	s.mu.Lock()
	// Registering the pipe with the socket and with its listener is one
	// step: Close and Unbind see every pipe, and no pipe they did not see
	// survives them.
	if s.closed || (l != nil && s.listeners[l.bound] != l) {
		s.mu.Unlock()
		p.conn.Close()
		p.cipher.wipe()
		return ErrClosed
	}
	if s.opts.Trusted != nil && !s.opts.Trusted.Contains(p.client) {
		// Removed from the trusted keys after the handshake checked it:
		// the revocation sweep (watchTrust), which takes s.mu, has not
		// seen this pipe, and sees it if the removal comes after this.
		s.mu.Unlock()
		err := revokedError(p.client)
		s.refusePipe(p, err, err, slog.LevelWarn)
		return err
	}
	if a, ok := s.proto.(admitter); ok {
		if err := a.admit(p); err != nil {
			s.mu.Unlock()
			s.refusePipe(p, errAdmit, err, slog.LevelInfo)
			return err
		}
	}
	s.pipes[p] = struct{}{}
	if l != nil {
		p.listener = l
		l.accepted[p] = struct{}{}
	}
	s.mu.Unlock()
	return nil
}

// refusePipe closes the connection of a pipe refused after its handshake,
// counts the refusal as counted, and logs and emits err.
func (s *Socket) refusePipe(p *pipe, counted, err error, level slog.Level) {
	p.conn.Close()
	p.cipher.wipe()
	s.rejected.count(counted)
	s.logf(level, eventlog.HandshakeRefused, p.endpoint, p.remote, err)
	s.ev.emit(Event{Kind: EventRejected, Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, Err: err})
}

// connected starts a registered pipe and tells the owner and anyone
// waiting for a peer.
func (s *Socket) connected(p *pipe) {
	s.connects.Add(1)
	s.attach(p)
	p.start()
	s.ev.emit(Event{Kind: EventConnected, Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, PeerID: p.routeID})
	s.log.Log(slog.LevelDebug, eventlog.Connect, "endpoint", p.endpoint, "remote", p.remote, "peer_type", p.peerType)
	s.signalReady()
}

// attach hands a registered pipe to the owner's Attach hook and to the
// socket type's routing, unless it ended already (Close or Unbind may end
// it between its registration and now). attachMu orders this with detach:
// a pipe is detached only if it was attached, and after.
func (s *Socket) attach(p *pipe) {
	p.attachMu.Lock()
	defer p.attachMu.Unlock()
	if p.isDone() {
		return
	}
	if a, ok := s.proto.(idAssigner); ok {
		a.assignID(p)
	}
	if h := s.opts.Hooks.Attach; h != nil {
		h(&p.face)
	}
	s.proto.attach(p)
	s.mu.Lock()
	p.attached = true
	s.mu.Unlock()
}

// detach is called once per pipe when it terminates.
func (s *Socket) detach(p *pipe, err error) {
	s.mu.Lock()
	_, ok := s.pipes[p]
	delete(s.pipes, p)
	if p.listener != nil {
		delete(p.listener.accepted, p)
	}
	if ok {
		// Keep the dead pipe's counters in the socket totals, in the same
		// critical section so that Stats never misses them.
		st := p.counters()
		s.stats.msgsIn.Add(st.MsgsIn)
		s.stats.msgsOut.Add(st.MsgsOut)
		s.stats.bytesIn.Add(st.BytesIn)
		s.stats.bytesOut.Add(st.BytesOut)
		s.disconnects.Add(1)
	}
	s.mu.Unlock()
	s.fq.orphan(p)
	if !ok {
		return
	}
	p.attachMu.Lock()
	s.mu.Lock()
	attached := p.attached
	p.attached = false
	s.mu.Unlock()
	if attached {
		s.proto.detach(p)
		if h := s.opts.Hooks.Detach; h != nil {
			h(&p.face, err)
		}
	}
	p.attachMu.Unlock()
	var byPeer *RefusedError
	switch {
	case errors.Is(err, ErrProtocol) || errors.Is(err, ErrTooLarge):
		// Every protocol violation after the handshake ends here: one
		// count, one log line and one event per dropped peer.
		s.rejected.count(err)
		s.logf(slog.LevelWarn, eventlog.ProtocolError, p.endpoint, p.remote, err)
		s.ev.emit(Event{Kind: EventRejected, Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, PeerID: p.routeID, Err: err})
	case errors.As(err, &byPeer):
		// An ERROR after the handshake (a NULL server's Authenticator).
		s.refused.Add(1)
		s.logf(slog.LevelInfo, eventlog.RefusedByPeer, p.endpoint, p.remote, err)
	case errors.Is(err, ErrRefused):
		// A session closed by this socket's access control (a revoked key).
		s.logf(slog.LevelWarn, eventlog.SessionRevoked, p.endpoint, p.remote, err)
	}
	s.ev.emit(Event{Kind: EventDisconnected, Endpoint: p.endpoint, Remote: p.remote, PeerType: p.peerType, PeerID: p.routeID, Err: err})
	if s.log.Enabled(slog.LevelDebug) {
		reason := "closed"
		if err != nil {
			reason = errorReason(err)
		}
		s.log.Log(slog.LevelDebug, eventlog.Disconnect, "endpoint", p.endpoint, "remote", p.remote, "peer_type", p.peerType, "reason", reason)
	}
	s.signalReady()
	s.subsChanged.fire()
}

// readyWait returns a channel closed at the next signalReady.
func (s *Socket) readyWait() <-chan struct{} {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	return s.readyCh
}

// signalReady wakes senders waiting for a peer to become ready.
func (s *Socket) signalReady() {
	s.readyMu.Lock()
	close(s.readyCh)
	s.readyCh = make(chan struct{})
	s.readyMu.Unlock()
}

// pop is Recv for the socket types that hand messages out as received.
func (s *Socket) pop(ctx context.Context) (Msg, *pipe, error) {
	return s.fq.pop(ctx, nil)
}

func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}
