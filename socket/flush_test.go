package socket

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Flush waits for the send queues to be written: not while a peer that
// reads nothing holds them up, at once when it reads again.
func TestFlush(t *testing.T) {
	push := newSock(t, PUSH)
	if err := push.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush with no peers: %v", err)
	}
	pull := newSock(t, PULL, WithRecvHWM(1))
	connect(t, pull, bind(t, push))
	waitPeers(t, push, 1)

	// More than the kernel's buffers hold while the puller reads nothing.
	const n, size = 400, 64 << 10
	body := make([]byte, size)
	for i := 0; i < n; i++ {
		if err := push.Send(ctxT(t), Msg{Frames: [][]byte{body}}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := push.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Flush while the peer reads nothing: %v, want a timeout", err)
	}

	got := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			m, err := pull.Recv(ctxT(t))
			if err != nil {
				got <- fmt.Errorf("Recv %d: %w", i, err)
				return
			}
			m.Free()
		}
		got <- nil
	}()
	if err := push.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	for _, ps := range push.Stats().PerPeer {
		if ps.Queued != 0 {
			t.Fatalf("Flush returned with %d messages queued", ps.Queued)
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	push.Close()
	if err := push.Flush(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v, want ErrClosed", err)
	}
}
