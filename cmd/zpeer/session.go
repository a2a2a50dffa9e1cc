package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// session is one run of a socket command.
type session struct {
	a       *app
	sc      sockCmd
	o       *sockOpts
	raw     bool
	headers map[string]string
	out     *lineWriter
	status  *statusLine

	seq   uint64
	sent  atomic.Uint64
	recvd atomic.Uint64
	bad   atomic.Uint64 // received messages that could not be decoded
	start time.Time

	mu        sync.Mutex
	sock      *socket.Socket
	bound     []string         // the endpoints bound, as Bind returned them
	dialErr   map[string]error // the last dial error per connect endpoint
	disc      io.Closer        // discovery, when --discover is given
	refusedAt map[string]bool  // endpoints where a peer was refused (said once)

	metrics *metricsServer // --metrics
	log     *slog.Logger   // the library's logger: -v's slog lines, else discard

	lvc     *socket.LastValueCache // pub --last-value
	lvcDone chan struct{}          // closed when the cache's Serve ends

	// deferred is, for req, the endpoint of the replier that let the last
	// attempt time out: the retry's fresh socket connects to it only after
	// the request went to another replier, so that the retry fails over.
	deferred string
}

func (a *app) runSocket(ctx context.Context, sc sockCmd, o *sockOpts, args []string) (err error) {
	s := &session{
		a: a, sc: sc, o: o,
		raw:     o.codec == "raw",
		out:     newLineWriter(a.stdout),
		dialErr: make(map[string]error),
		start:   time.Now(),
	}
	if len(o.headers) > 0 {
		s.headers = make(map[string]string, len(o.headers))
		for _, h := range o.headers {
			k, v, _ := strings.Cut(h, "=")
			s.headers[k] = v
		}
	}
	// The status line is set before the socket exists: the socket's
	// events and logs (a refused peer) go through logf, which reads it.
	if !sameTerminal(a.stdout, a.stderr) {
		s.status = startStatus(a.stderr, &a.errMu, 250*time.Millisecond, s.statusText)
	}
	s.log = a.slogger(o.verbose, func() *statusLine { return s.status })
	if s.metrics, err = a.serveMetrics(o.metrics); err != nil {
		s.status.Stop()
		return err
	}
	defer s.metrics.Close()
	defer s.watchTrust()()
	if !o.ack.on { // the acked pipeline's sockets are pattern's
		if err := s.open(ctx, true); err != nil {
			s.status.Stop()
			return err
		}
	}
	defer func() {
		s.status.Stop()
		s.close()
		if cerr := s.out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing output: %w", cerr)
		}
		if in, ok := errInterrupted(ctx); ok {
			a.errorf("zpeer: %s: %s", in, s.summary())
			err = reported{in}
		} else if o.verbose {
			a.errorf("zpeer: %s", s.summary())
		}
	}()

	switch {
	case o.ack.on:
		err = s.runAcked(ctx, args)
	case sc.typ == socket.REQ:
		err = s.runReq(ctx, args)
	case sc.typ == socket.DEALER:
		err = s.runDealer(ctx, args)
	case sc.typ == socket.PAIR:
		err = s.runPair(ctx, args)
	case o.keySep != "":
		err = s.runKeyedPush(ctx, args)
	case sc.role&roleSend != 0:
		err = s.runSend(ctx, args)
	default:
		err = s.runRecv(ctx)
	}
	return err
}

// newSocket creates the command's socket with its options.
func (s *session) newSocket() (*socket.Socket, error) {
	opts := []socket.Option{
		socket.WithLinger(s.o.linger),
		socket.WithEventHandler(s.event),
		socket.WithReconnect(50*time.Millisecond, 2*time.Second),
	}
	if s.o.identity != "" {
		opts = append(opts, socket.WithIdentity([]byte(s.o.identity)))
	}
	opts = append(opts, s.securityOptions()...)
	if s.o.lastVal {
		return s.newCache(opts)
	}
	sock, err := socket.New(s.sc.typ, opts...)
	if err != nil {
		return nil, usageError{err}
	}
	if s.sc.typ == socket.SUB {
		topics := s.o.topics
		if len(topics) == 0 {
			topics = []string{""}
		}
		for _, t := range topics {
			if err := sock.Subscribe(t); err != nil {
				sock.Close()
				return nil, err
			}
		}
	}
	return sock, nil
}

// open creates the socket, binds, connects and starts discovery. first is
// false when req reopens its socket after a lost reply: it then binds the
// endpoints it got the first time, quietly.
func (s *session) open(ctx context.Context, first bool) error {
	sock, err := s.newSocket()
	if err != nil {
		return err
	}
	binds := s.o.binds
	if !first {
		binds = s.bound
	}
	var bound []string
	for _, ep := range binds {
		real, err := sock.Bind(ep)
		if err != nil {
			sock.Close()
			return err
		}
		bound = append(bound, real)
		if first {
			s.a.errorf("bound %s", real)
		}
	}
	for _, ep := range s.o.connects {
		if ep == s.deferred {
			continue // req: connected once the retry went elsewhere
		}
		if err := sock.Connect(ep); err != nil {
			sock.Close()
			return err
		}
	}
	s.mu.Lock()
	s.sock, s.bound = sock, bound
	s.mu.Unlock()
	if c := s.metrics.collector(); c != nil {
		c.Remove(s.sc.name) // req's socket before a retry
		c.AddSocket(s.sc.name, sock)
	}
	if s.o.discover != "" {
		if first {
			if err := s.startDiscovery(ctx); err != nil {
				sock.Close()
				return err
			}
		} else {
			s.rediscover()
		}
	}
	return nil
}

// close closes the socket, lingering for queued messages, and stops
// discovery, with its goodbye announcements.
func (s *session) close() {
	s.mu.Lock()
	sock, disc := s.sock, s.disc
	s.sock, s.disc = nil, nil
	s.mu.Unlock()
	// The socket first, so that queued messages still go out while the
	// connections discovery made are up; then the goodbyes.
	if sock != nil {
		sock.Close()
	}
	if s.lvcDone != nil {
		<-s.lvcDone
	}
	if disc != nil {
		disc.Close()
	}
}

func (s *session) socket() *socket.Socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sock
}

// event records dial failures (to explain an unreachable peer) and explains
// refusals.
func (s *session) event(ev socket.Event) {
	s.mu.Lock()
	switch ev.Kind {
	case socket.EventRetry:
		s.dialErr[ev.Endpoint] = ev.Err
	case socket.EventConnected:
		delete(s.dialErr, ev.Endpoint)
	}
	s.mu.Unlock()
	s.discoveryHint(ev)
	s.securityEvent(ev)
	if ev.Kind == socket.EventRejected && ev.Err != nil && strings.Contains(ev.Err.Error(), "not compatible with") {
		s.refused(ev.Endpoint, fmt.Errorf("refused a peer of the wrong socket type at %s: %s", ev.Endpoint, rootCause(ev.Err)))
	}
	// With -v the socket's own slog lines (connect, disconnect, refusals)
	// say the rest.
}

// refused says once per endpoint why a peer was refused at the handshake
// (a pull for a push --ack, say): without it the command would only wait.
func (s *session) refused(ep string, err error) {
	s.mu.Lock()
	if s.refusedAt == nil {
		s.refusedAt = make(map[string]bool)
	}
	first := !s.refusedAt[ep]
	s.refusedAt[ep] = true
	s.mu.Unlock()
	if first {
		s.logf("%s", strings.TrimPrefix(err.Error(), "pattern: "))
	}
}

// logf writes one line on standard error, clearing the status line first.
func (s *session) logf(format string, args ...any) {
	s.a.errMu.Lock()
	defer s.a.errMu.Unlock()
	s.status.clear()
	fmt.Fprintf(s.a.stderr, "zpeer: "+format+"\n", args...)
}

func (s *session) summary() string {
	el := time.Since(s.start).Seconds()
	sum := fmt.Sprintf("sent %d, received %d in %.1fs", s.sent.Load(), s.recvd.Load(), el)
	if n := s.bad.Load(); n > 0 {
		sum += fmt.Sprintf(", %d undecodable", n)
	}
	return sum
}

func (s *session) statusText() string {
	el := max(time.Since(s.start).Seconds(), 1e-3)
	peers := 0
	if sock := s.socket(); sock != nil {
		peers = sock.Peers()
	}
	sent, recvd := s.sent.Load(), s.recvd.Load()
	return fmt.Sprintf("%s: %d peers, sent %d (%.0f/s), received %d (%.0f/s)",
		s.sc.name, peers, sent, float64(sent)/el, recvd, float64(recvd)/el)
}

// unreachable explains why no peer is there: the dial errors seen so far.
func (s *session) unreachable() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dialErr) == 0 {
		return ""
	}
	eps := make([]string, 0, len(s.dialErr))
	for ep := range s.dialErr {
		eps = append(eps, ep)
	}
	sort.Strings(eps)
	parts := make([]string, len(eps))
	for i, ep := range eps {
		parts[i] = fmt.Sprintf("cannot reach %s: %s", ep, rootCause(s.dialErr[ep]))
	}
	return strings.Join(parts, "; ")
}

// rootCause is the innermost useful text of a network error: "connection
// refused" rather than the whole dial chain.
func rootCause(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "socket: ")
}

// opContext bounds one operation by --timeout.
func (s *session) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.o.timeout > 0 {
		return context.WithTimeout(ctx, s.o.timeout)
	}
	return context.WithCancel(ctx)
}

func isTimeout(err error) bool {
	return errors.Is(err, socket.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// source yields the messages to send: the MESSAGE arguments (repeated up to
// --count when it is larger), or else the lines of standard input.
type source struct {
	args  []string
	i     int
	cycle bool
	lines chan []byte
	errc  chan error
}

func (s *session) source(args []string) *source {
	if len(args) > 0 {
		return &source{args: args, cycle: s.o.count > len(args)}
	}
	src := &source{lines: make(chan []byte, 64), errc: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(s.a.stdin)
		sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
		for sc.Scan() {
			line := sc.Bytes()
			line = line[:len(line)-len(trailingCR(line))]
			src.lines <- append([]byte(nil), line...)
		}
		src.errc <- sc.Err()
		close(src.lines)
	}()
	return src
}

func trailingCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[len(b)-1:]
	}
	return nil
}

// next returns the next message, or ok false at the end.
func (src *source) next(ctx context.Context) (msg []byte, ok bool, err error) {
	if src.lines == nil {
		if src.i >= len(src.args) {
			if !src.cycle || len(src.args) == 0 {
				return nil, false, nil
			}
			src.i = 0
		}
		src.i++
		return []byte(src.args[src.i-1]), true, nil
	}
	select {
	case line, ok := <-src.lines:
		if !ok {
			if err := <-src.errc; err != nil {
				return nil, false, fmt.Errorf("reading standard input: %w", err)
			}
			return nil, false, nil
		}
		return line, true, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// envelope builds the envelope of one outgoing message.
func (s *session) envelope(kind codec.Kind, topic string, body []byte) *codec.Envelope {
	s.seq++
	return &codec.Envelope{
		ID:        codec.NewID(),
		Kind:      kind,
		Type:      s.o.msgType,
		Priority:  s.o.priority,
		Timestamp: time.Now().UnixNano(),
		Sender:    s.o.name,
		Seq:       s.seq,
		Topic:     topic,
		Headers:   s.headers,
		Body:      body,
	}
}

// frames encodes one outgoing message: raw, the body itself; msgpack, the
// envelope. pub puts the topic frame first, for subscription filtering.
func (s *session) frames(kind codec.Kind, text []byte) ([][]byte, error) {
	body, err := encodeBody(s.raw, s.o.body, text)
	if err != nil {
		return nil, err
	}
	topic, pub := "", s.sc.typ == socket.PUB
	if pub && len(s.o.topics) > 0 {
		topic = s.o.topics[0]
	}
	if s.raw {
		frames := s.splitFrames(body)
		if pub && topic != "" {
			return append([][]byte{[]byte(topic)}, frames...), nil
		}
		return frames, nil
	}
	env, err := s.envelope(kind, topic, body).AppendEncode(nil)
	if err != nil {
		return nil, err
	}
	if pub {
		return [][]byte{[]byte(topic), env}, nil
	}
	return [][]byte{env}, nil
}

// splitFrames splits a raw message's text into frames at --frame-sep.
func (s *session) splitFrames(text []byte) [][]byte {
	if s.o.frameSep == "" {
		return [][]byte{text}
	}
	return bytes.Split(text, []byte(s.o.frameSep))
}

// print writes one received message to standard output.
func (s *session) print(m *message) error {
	b, err := s.format(m)
	if err != nil {
		return err
	}
	return s.out.Line(b)
}

// format is the output line of one received message.
func (s *session) format(m *message) ([]byte, error) {
	if s.o.json {
		return marshalJSON(m.record())
	}
	return m.line(s.sc.typ == socket.SUB), nil
}

// received decodes and prints one received message; a message that does
// not decode is reported on standard error and skipped (nil, nil).
func (s *session) received(frames [][]byte, routingID []byte) (*message, error) {
	m := s.decode(frames, routingID)
	if m == nil {
		return nil, nil
	}
	return m, s.print(m)
}

// decode decodes and counts one received message; one that does not
// decode is reported on standard error and skipped (nil).
func (s *session) decode(frames [][]byte, routingID []byte) *message {
	m, err := decodeMessage(frames, s.raw, s.sc.typ == socket.SUB)
	m.routingID = routingID
	m.sep = s.o.frameSep
	if err != nil {
		s.bad.Add(1)
		s.logf("skipped a message: %v", err)
		return nil
	}
	s.recvd.Add(1)
	return m
}

// waitPeers waits, up to --timeout, for n peers (pub: n subscribers).
func (s *session) waitPeers(ctx context.Context, n int) error {
	return s.waitReady(ctx, n, s.readyPeers)
}

// waitReady waits, within --timeout, until ready() counts n peers.
func (s *session) waitReady(ctx context.Context, n int, ready func() int) error {
	if n <= 0 {
		return nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	what := "peer"
	if s.sc.typ == socket.PUB {
		what = "subscriber"
	}
	if n > 1 {
		what += "s"
	}
	for waited := false; ; waited = true {
		if ready() >= n {
			return nil
		}
		if !waited {
			limit := "for ever"
			if s.o.timeout > 0 {
				limit = "up to " + s.o.timeout.String()
			}
			s.logf("waiting for %d %s (%s)", n, what, limit)
		}
		select {
		case <-ctx.Done():
			if isTimeout(ctx.Err()) {
				got := fmt.Sprintf("%d of %d %s ready after %s", ready(), n, what, s.o.timeout)
				if s.sc.typ == socket.PUB && s.unreachable() == "" {
					return errors.New("nothing published: " + got)
				}
				return s.noPeerError(got)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// readyPeers counts connected peers; on a PUB, the peers whose
// subscriptions have reached the socket (a message published before that
// would not be sent to them).
func (s *session) readyPeers() int {
	sock := s.socket()
	if sock == nil {
		return 0
	}
	if s.sc.typ != socket.PUB {
		return sock.Peers()
	}
	n := 0
	for _, p := range sock.Stats().PerPeer {
		if p.Subscriptions > 0 {
			n++
		}
	}
	return n
}

func (s *session) noPeerError(what string) error {
	if why := s.unreachable(); why != "" {
		return fmt.Errorf("%s (%s)", why, what)
	}
	return errors.New(what)
}

// pause waits --interval between messages.
// nextFrames takes the next message to send from src, after the pause
// between messages (--interval), and builds its frames. ok is false when
// src is exhausted.
func (s *session) nextFrames(ctx context.Context, src *source) (frames [][]byte, ok bool, err error) {
	text, ok, err := src.next(ctx)
	if err != nil || !ok {
		return nil, false, err
	}
	if s.sent.Load() > 0 {
		if err := s.pause(ctx); err != nil {
			return nil, false, err
		}
	}
	frames, err = s.frames(codec.KindData, text)
	if err != nil {
		return nil, false, err
	}
	return frames, true, nil
}

func (s *session) pause(ctx context.Context) error {
	if s.o.interval <= 0 {
		return nil
	}
	t := time.NewTimer(s.o.interval)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runSend is pub and push: send every message, then linger on close.
func (s *session) runSend(ctx context.Context, args []string) error {
	peers := s.o.peers
	if s.sc.typ == socket.PUB && !s.o.peersSet {
		// One subscriber per endpoint it connects to, else one: publishing
		// before anyone subscribed would send nothing (the slow joiner).
		peers = max(len(s.o.connects), 1)
	}
	if err := s.waitPeers(ctx, peers); err != nil {
		return err
	}
	src := s.source(args)
	for s.o.count == 0 || s.sent.Load() < uint64(s.o.count) {
		frames, ok, err := s.nextFrames(ctx, src)
		if err != nil || !ok {
			return err
		}
		if err := s.sendOne(ctx, frames); err != nil {
			return err
		}
	}
	return nil
}

// sendOne sends one message of frames within --timeout and counts it; a
// timeout with no peer taking it is a no-peer error.
func (s *session) sendOne(ctx context.Context, frames [][]byte) error {
	sctx, cancel := s.opContext(ctx)
	var err error
	if s.lvc != nil {
		err = s.lvc.Send(sctx, socket.Msg{Frames: frames, Priority: s.o.priority})
	} else {
		err = s.socket().Send(sctx, socket.Msg{Frames: frames, Priority: s.o.priority})
	}
	cancel()
	if err != nil {
		if isTimeout(err) && ctx.Err() == nil {
			return s.noPeerError(fmt.Sprintf("no peer took message %d within %s", s.sent.Load()+1, s.o.timeout))
		}
		return err
	}
	s.sent.Add(1)
	return nil
}

// runRecv is rep, sub, pull and router: receive, print, and answer (rep,
// router) until --count or --timeout.
func (s *session) runRecv(ctx context.Context) error {
	for s.o.count == 0 || s.recvd.Load() < uint64(s.o.count) {
		rctx, cancel := s.opContext(ctx)
		m, err := s.socket().Recv(rctx)
		cancel()
		if err != nil {
			if isTimeout(err) && ctx.Err() == nil {
				if s.o.count == 0 && s.recvd.Load() > 0 {
					// The stream has ended (see timeoutRule).
					return s.undecodable()
				}
				return fmt.Errorf("no message within %s (received %d)", s.o.timeout, s.recvd.Load())
			}
			return err
		}
		frames, routingID, prefix := m.Frames, []byte(nil), [][]byte(nil)
		if s.sc.typ == socket.ROUTER {
			routingID, prefix, frames = splitRouter(frames)
		}
		if s.sc.typ == socket.PULL && s.o.exec != "" {
			if err := s.pullExec(ctx, frames); err != nil {
				return err
			}
			continue
		}
		msg, err := s.received(frames, routingID)
		if err != nil {
			return err
		}
		if s.sc.role&roleReply == 0 {
			continue
		}
		reply := s.reply(ctx, msg, frames)
		if s.sc.typ == socket.ROUTER {
			reply = append(append([][]byte{routingID}, prefix...), reply...)
		}
		// A reply tells the requester its request was taken: the line
		// printed for it leaves the process first.
		if err := s.out.Out(); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		sctx, cancel := s.opContext(ctx)
		err = s.socket().Send(sctx, socket.Msg{Frames: reply, Priority: s.o.priority})
		cancel()
		if err != nil {
			if errors.Is(err, socket.ErrNoSuchPeer) {
				s.logf("the peer left before its reply: %v", err)
				continue
			}
			return err
		}
		s.sent.Add(1)
	}
	return s.undecodable()
}

// undecodable is the error of a receiver that skipped messages it could
// not decode: it went on, but exits 1.
func (s *session) undecodable() error {
	n := s.bad.Load()
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d messages were not zpeer envelopes and were skipped (--codec raw prints them)", n, n+s.recvd.Load())
}

// pullExec runs --exec for one message pulled (without --ack): its output
// is pull's, and a failure is logged (the message is gone, as
// fire-and-forget messages are).
func (s *session) pullExec(ctx context.Context, frames [][]byte) error {
	m := s.decode(frames, nil)
	if m == nil {
		return nil
	}
	err := s.execOn(ctx, m, false)
	if err != nil && !isOutputError(err) {
		s.logf("--exec: %v", err)
		return nil
	}
	return err
}

// outputError is a failure to write standard output.
type outputError struct{ error }

func (e outputError) Unwrap() error { return e.error }

func isOutputError(err error) bool {
	var o outputError
	return errors.As(err, &o)
}

// execOn runs --exec on m's body and prints what it writes; the error is
// the command's (or an outputError). With out, it returns once that output
// is out of the process (see lineWriter.LineOut).
func (s *session) execOn(ctx context.Context, m *message, out bool) error {
	text, err := s.runExec(ctx, m.bodyText())
	if len(text) > 0 {
		line := s.out.Line
		if out {
			line = s.out.LineOut
		}
		if werr := line(text); werr != nil {
			return outputError{werr}
		}
	}
	return err
}

// splitRouter splits what a ROUTER receives into the routing id, the
// envelope up to and including the empty delimiter (from REQ and
// delimiter-using DEALER peers), and the message.
func splitRouter(frames [][]byte) (id []byte, prefix, msg [][]byte) {
	id, rest := frames[0], frames[1:]
	for i, f := range rest {
		if len(f) == 0 {
			return id, rest[:i+1], rest[i+1:]
		}
	}
	return id, nil, rest
}

// reply builds the answer to one request: the request's body unchanged, or
// --exec's output. A request that could not be decoded (msg nil) gets an
// error reply, since a REP must answer before it can receive again.
func (s *session) reply(ctx context.Context, msg *message, frames [][]byte) [][]byte {
	kind, body := codec.KindReply, []byte(nil)
	var req *codec.Envelope
	switch {
	case msg == nil:
		kind, body = codec.KindError, mustMarshal("zpeer: the request is not a zpeer envelope")
	case s.o.exec == "":
		if s.raw {
			return frames
		}
		body, req = msg.env.Body, &msg.env
	default:
		req = &msg.env
		out, err := s.runExec(ctx, msg.bodyText())
		if err != nil {
			s.logf("--exec: %v", err)
			if !s.raw {
				kind, body = codec.KindError, mustMarshal(err.Error())
				break
			}
		}
		if body, err = encodeBody(s.raw, s.o.body, out); err != nil {
			s.logf("%v", err)
			kind, body = codec.KindError, mustMarshal(err.Error())
		}
	}
	if s.raw {
		return s.splitFrames(body)
	}
	env := s.envelope(kind, "", body)
	if req != nil {
		// The library's reply rule (codec's Reply, as pattern's Replier
		// uses): the request's id, priority and sequence number.
		r := req.Reply()
		env.ID, env.Priority, env.Seq = r.ID, r.Priority, r.Seq
		if env.Type == "" {
			env.Type = req.Type
		}
	}
	b, err := env.AppendEncode(nil)
	if err != nil {
		env.Kind, env.Body = codec.KindError, mustMarshal(err.Error())
		b, _ = env.AppendEncode(nil)
	}
	return [][]byte{b}
}

func mustMarshal(s string) []byte {
	b, _ := codec.MarshalValue(s)
	return b
}
