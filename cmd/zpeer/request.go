package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

// runExec runs --exec with text (and a newline) on its standard input and
// returns its standard output without the final newline.
func (s *session) runExec(ctx context.Context, text []byte) ([]byte, error) {
	ectx, cancel := s.opContext(ctx)
	defer cancel()
	cmd := exec.CommandContext(ectx, "/bin/sh", "-c", s.o.exec)
	cmd.Stdin = bytes.NewReader(append(append([]byte(nil), text...), '\n'))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	out = bytes.TrimSuffix(out, []byte("\n"))
	if err != nil {
		detail := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(detail, '\n'); i >= 0 {
			detail = detail[:i]
		}
		if ectx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s", s.o.timeout)
		}
		if detail != "" {
			return out, fmt.Errorf("%q: %v: %s", s.o.exec, err, detail)
		}
		return out, fmt.Errorf("%q: %v", s.o.exec, err)
	}
	return out, nil
}

// runReq sends each request and waits for its reply, retrying on a fresh
// socket (lazy pirate) when none comes in time.
//
// This is not a second copy of pattern.Requester's retry logic, and cannot
// be built on it: `zpeer req` must talk to any ZeroMQ REP (libzmq, pyzmq,
// --raw frames that are not zpeer envelopes), so it is a real REQ socket.
// A REQ socket enforces send/recv alternation and, after a lost reply, is
// stuck until it is replaced: the zguide's Lazy Pirate closes and reopens
// it (reopen), connecting the endpoint that got the unanswered request
// last so that the retry goes elsewhere. pattern.Requester is a DEALER that
// sends zpeer envelopes, matches replies by envelope id (a late reply is
// discarded), and picks each attempt's replier through the socket's peer
// handles with a breaker per replier; it never reopens a socket. What the
// two share is only "try at most retries+1 times", the loop below.
func (s *session) runReq(ctx context.Context, args []string) error {
	if err := s.waitPeers(ctx, s.o.peers); err != nil {
		return err
	}
	src := s.source(args)
	for s.o.count == 0 || s.sent.Load() < uint64(s.o.count) {
		frames, ok, err := s.nextFrames(ctx, src)
		if err != nil || !ok {
			return err
		}
		var reply socket.Msg
		for attempt := 1; ; attempt++ {
			reply, err = s.request(ctx, frames)
			if err == nil {
				break
			}
			if ctx.Err() != nil || !retryable(err) {
				return err
			}
			if attempt > s.o.retries {
				return s.noReplyError(err, attempt)
			}
			if s.o.verbose {
				s.logf("no reply within %s, retrying (%d of %d) on a fresh connection", s.o.timeout, attempt, s.o.retries)
			}
			if err := s.reopen(ctx); err != nil {
				return err
			}
		}
		s.sent.Add(1)
		m, err := decodeMessage(reply.Frames, s.raw, false)
		if err != nil {
			s.bad.Add(1)
			return fmt.Errorf("cannot read the reply: %w", err)
		}
		m.sep = s.o.frameSep
		s.recvd.Add(1)
		if err := s.print(m); err != nil {
			return err
		}
		if m.env.Kind == codec.KindError {
			return fmt.Errorf("error reply from the peer: %s", m.bodyText())
		}
	}
	return nil
}

// errNoReply marks a request whose reply did not come in time.
var errNoReply = errors.New("no reply")

func retryable(err error) bool {
	return isTimeout(err) || errors.Is(err, socket.ErrPeerLost) || errors.Is(err, errNoReply)
}

// request sends one request and waits for its reply, each step bounded by
// --timeout.
func (s *session) request(ctx context.Context, frames [][]byte) (socket.Msg, error) {
	sock := s.socket()
	sctx, cancel := s.opContext(ctx)
	err := sock.Send(sctx, socket.Msg{Frames: frames, Priority: s.o.priority})
	cancel()
	if ep := s.deferred; ep != "" {
		s.deferred = ""
		sock.Connect(ep)
	}
	if err != nil {
		return socket.Msg{}, err
	}
	rctx, cancel := s.opContext(ctx)
	defer cancel()
	m, err := sock.Recv(rctx)
	if isTimeout(err) {
		err = fmt.Errorf("%w: %w", errNoReply, err)
	}
	return m, err
}

func (s *session) noReplyError(err error, attempts int) error {
	tries := "1 attempt"
	if attempts > 1 {
		tries = fmt.Sprintf("%d attempts", attempts)
	}
	switch {
	case errors.Is(err, errNoReply):
		return fmt.Errorf("no reply within %s (%s)", s.o.timeout, tries)
	case errors.Is(err, socket.ErrPeerLost):
		return fmt.Errorf("the peer went away before replying (%s)", tries)
	}
	return s.noPeerError(fmt.Sprintf("no peer took the request within %s, %s", s.o.timeout, tries))
}

// reopen replaces the REQ socket, whose state is stuck waiting for a reply
// that will not come, by a fresh one on the same endpoints. The endpoint
// that got the unanswered request is connected only after the retry is
// sent, so that the retry goes to another replier when there is one.
func (s *session) reopen(ctx context.Context) error {
	s.mu.Lock()
	old := s.sock
	s.sock = nil
	s.mu.Unlock()
	if old != nil {
		s.deferred = ""
		if peers := old.Stats().PerPeer; len(peers) > 1 {
			for _, p := range peers {
				if p.MsgsOut > 0 && s.isConnectEndpoint(p.Endpoint) {
					s.deferred = p.Endpoint
				}
			}
		}
		old.Close()
	}
	return s.open(ctx, false)
}

// isConnectEndpoint reports whether ep is one this session connects to
// (given with --connect or found by discovery), not one it bound.
func (s *session) isConnectEndpoint(ep string) bool {
	for _, c := range s.o.connects {
		if c == ep {
			return true
		}
	}
	s.mu.Lock()
	d, _ := s.disc.(*sessionDiscovery)
	s.mu.Unlock()
	return d != nil && d.conn != nil && d.conn.has(ep)
}

// runDealer sends every request without waiting, prints the replies as
// they come, and finishes when each request has had one.
func (s *session) runDealer(ctx context.Context, args []string) error {
	if err := s.waitPeers(ctx, s.o.peers); err != nil {
		return err
	}
	rctx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	got := make(chan struct{}, 1)
	recvErr := make(chan error, 1)
	var errReplies atomic.Uint64
	go func() {
		sock := s.socket()
		for {
			m, err := sock.Recv(rctx)
			if err != nil {
				recvErr <- err
				return
			}
			frames := m.Frames
			for len(frames) > 1 && len(frames[0]) == 0 {
				frames = frames[1:] // the delimiter
			}
			msg, err := s.received(frames, nil)
			if err != nil {
				recvErr <- err
				return
			}
			if msg != nil && msg.env.Kind == codec.KindError {
				errReplies.Add(1)
				s.logf("error reply from the peer: %s", msg.bodyText())
			}
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()

	src := s.source(args)
	for s.o.count == 0 || s.sent.Load() < uint64(s.o.count) {
		frames, ok, err := s.nextFrames(ctx, src)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := s.sendOne(ctx, append([][]byte{{}}, frames...)); err != nil {
			return err
		}
	}

	// Wait for the replies; --timeout bounds the silence between two.
	idle := s.newIdleTimer()
	defer idle.stop()
	for s.recvd.Load()+s.bad.Load() < s.sent.Load() {
		select {
		case <-got:
			idle.reset()
		case <-idle.c:
			return fmt.Errorf("no reply within %s: %d of %d replies", s.o.timeout, s.recvd.Load(), s.sent.Load())
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if n := errReplies.Load(); n > 0 {
		return fmt.Errorf("%d of %d replies were errors", n, s.recvd.Load())
	}
	return s.undecodable()
}

// idleTimer fires when --timeout passes with no reset; with no --timeout,
// never.
type idleTimer struct {
	c <-chan time.Time
	t *time.Timer
	d time.Duration
}

func (s *session) newIdleTimer() *idleTimer {
	it := &idleTimer{d: s.o.timeout}
	if it.d > 0 {
		it.t = time.NewTimer(it.d)
		it.c = it.t.C
	}
	return it
}

func (it *idleTimer) reset() {
	if it.t != nil {
		it.t.Reset(it.d)
	}
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}
