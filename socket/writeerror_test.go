package socket

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// When a write fails because the peer closed (with data of ours unread, so
// its kernel reset the connection), every message the peer sent before
// closing is still delivered: the pipe stops writing but lets its reader
// read to the end before it ends (the acks a closing worker sent last).
func TestWriteErrorKeepsWhatThePeerSent(t *testing.T) {
	for run := 0; run < 3; run++ {
		// a reads one message at a time (its reader pauses) and we do not
		// Recv until its write has failed: without the fix, what the peer
		// sent is then still in a's kernel buffer when a closes it.
		a := newSock(t, DEALER, WithRecvHWM(1))
		b := newSock(t, DEALER, WithRecvHWM(1), WithLinger(5*time.Second))
		connect(t, b, bind(t, a))
		waitPeers(t, a, 1)
		waitPeers(t, b, 1)
		peer := a.PeerList()[0]

		const n = 10
		for i := 0; i < n; i++ {
			send(t, b, fmt.Sprintf("ack %d", i))
		}
		if err := b.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		// b reads nothing of what a sends now, then closes: a's next
		// writes fail.
		body := make([]byte, 4<<10)
		if err := a.SendTo(ctxT(t), peer, Msg{Frames: [][]byte{body}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "b to hold a's message", func() bool { return b.Stats().MsgsIn > 0 })
		b.Close()
		ctx := ctxT(t)
		for {
			err := a.SendTo(ctx, peer, Msg{Frames: [][]byte{body}})
			if errors.Is(err, ErrPeerLost) {
				break
			}
			if err != nil {
				t.Fatalf("SendTo: %v", err)
			}
		}
		for i := 0; i < n; i++ {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := a.Recv(rctx)
			cancel()
			if err != nil {
				t.Fatalf("run %d: message %d of %d lost: %v", run, i, n, err)
			}
			if got, want := string(m.Frames[0]), fmt.Sprintf("ack %d", i); got != want {
				t.Fatalf("run %d: got %q, want %q", run, got, want)
			}
			m.Free()
		}
		a.Close()
	}
}
