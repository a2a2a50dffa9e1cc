package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// heldConn is a dialled TCP connection whose reads, once the handshake is
// over (the socket clears the handshake deadline), wait until release is
// closed: what the peer sends meanwhile stays in the kernel's receive
// buffer, unread, as it does when the reader has not been scheduled yet.
type heldConn struct {
	*net.TCPConn
	armed   atomic.Bool
	release chan struct{}
}

func (c *heldConn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		c.armed.Store(true)
	}
	return c.TCPConn.SetDeadline(t)
}

func (c *heldConn) Read(b []byte) (int, error) {
	if c.armed.Load() {
		<-c.release
	}
	return c.TCPConn.Read(b)
}

// TestDisconnectKeepsArrivedMessages: messages that had arrived on a
// connection when the application (or discovery, on a goodbye) calls
// Disconnect stay readable after it, even though the reader had not read
// them yet. For REQ this is the reply to the request in flight: Recv
// returns it rather than ErrPeerLost (a `req --discover` that saw the
// replier's goodbye before its reply used to fail with "the peer went away
// before replying").
func TestDisconnectKeepsArrivedMessages(t *testing.T) {
	for _, tc := range []struct {
		ours, theirs Type
		n            int
	}{
		{REQ, REP, 1},
		{PULL, PUSH, 200},
		{DEALER, ROUTER, 50},
	} {
		t.Run(tc.ours.String(), func(t *testing.T) {
			theirs := newSock(t, tc.theirs)
			ep := bind(t, theirs)
			ours := newSock(t, tc.ours, WithRecvHWM(1000))
			held := make(chan *heldConn, 1)
			release := make(chan struct{})
			ours.dialWrap = func(c net.Conn) net.Conn {
				h := &heldConn{TCPConn: c.(*net.TCPConn), release: release}
				held <- h
				return h
			}
			connect(t, ours, ep)
			waitPeers(t, ours, 1)
			waitPeers(t, theirs, 1)
			hc := <-held
			ctx := ctxT(t)

			// The peer sends n messages; each is 2 bytes of ZMTP header and
			// its body on the wire (plus, for REQ, the delimiter frame).
			body := func(i int) string { return fmt.Sprintf("message %04d", i) }
			wire := 0
			switch tc.ours {
			case REQ:
				send(t, ours, "request")
				// The REP's reader is not held: it answers.
				if got := recvString(t, theirs); len(got) != 1 || got[0] != "request" {
					t.Fatalf("REP got %q", got)
				}
				send(t, theirs, body(0))
				wire = 2 + 2 + len(body(0))
			case PULL:
				for i := range tc.n {
					send(t, theirs, body(i))
					wire += 2 + len(body(i))
				}
			case DEALER:
				id := theirs.PeerList()[0].Identity()
				for i := range tc.n {
					if err := theirs.Send(ctx, NewMsg(id, []byte(body(i)))); err != nil {
						t.Fatal(err)
					}
					wire += 2 + len(body(i))
				}
			}
			if err := theirs.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the messages to arrive in the kernel's buffer", func() bool { return unread(hc.TCPConn) >= wire })

			// Disconnect runs while the reader is held, then the reader goes
			// on: on a connection closed under it, everything would be lost.
			disconnected := make(chan error, 1)
			go func() { disconnected <- ours.Disconnect(ep) }()
			peer := ours.PeerList()
			waitFor(t, "Disconnect to stop sending to the peer", func() bool { return len(peer) == 1 && !peer[0].Ready() })
			close(release)
			select {
			case err := <-disconnected:
				if err != nil {
					t.Fatalf("Disconnect: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("Disconnect did not return")
			}
			if n := ours.Peers(); n != 0 {
				t.Fatalf("%d peers after Disconnect returned, want 0", n)
			}
			for i := range tc.n {
				m, err := ours.Recv(ctx)
				if err != nil {
					t.Fatalf("Recv %d of %d after Disconnect: %v", i+1, tc.n, err)
				}
				if got := string(m.Frames[len(m.Frames)-1]); got != body(i) {
					t.Fatalf("Recv %d: %q, want %q", i+1, got, body(i))
				}
			}
			// Nothing more: the socket has no peer, and nothing was invented.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if tc.ours == REQ {
				// REQ has taken its one reply: it may send again (it has no
				// peer to send to now).
				if err := ours.Send(short, NewMsgString("again")); errors.Is(err, ErrState) {
					t.Fatalf("Send after the reply: %v", err)
				}
			} else if m, err := ours.Recv(short); err == nil {
				t.Fatalf("an extra message after Disconnect: %q", m.Frames)
			}
			if st := ours.Stats(); st.Discarded != 0 {
				t.Fatalf("%d messages discarded", st.Discarded)
			}
		})
	}
}
