package socket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPausedReaderKeepsPeer: a PULL whose application stops calling Recv
// for many heartbeat timeouts back-pressures its pusher and keeps the
// connection: every message Send accepted arrives once the reader resumes,
// and neither side disconnects. (Before the fix the paused reader saw no
// PONGs, declared the live pusher dead after one timeout and the pusher's
// queue went down with the connection.)
func TestPausedReaderKeepsPeer(t *testing.T) {
	const (
		// A timeout long enough that a process merely not scheduled on a
		// loaded machine is not taken for dead, short enough that the
		// pause is several of them.
		ivl     = 100 * time.Millisecond
		timeout = 2 * time.Second
		pause   = 3 * timeout // the reader is away this long
	)
	for _, size := range []int{64, 4 << 10} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			t.Parallel() // the pause is idle time
			pull := newSock(t, PULL, WithHeartbeat(ivl, timeout), WithRecvHWM(50))
			// The pusher's own timeout is a safety net: its reader is not
			// paused, and what is under test is the paused side's
			// judgement. Afterwards the test drains tens of thousands of
			// messages (the kernel's buffers hold megabytes) under -race on
			// a loaded machine, during which the puller's PINGs may be late
			// by seconds; a pusher that took that for death would reset
			// the connection with the data in flight.
			push := newSock(t, PUSH, WithHeartbeat(ivl, 30*time.Second), WithSendHWM(50))
			connect(t, push, bind(t, pull))
			waitPeers(t, pull, 1)
			waitPeers(t, push, 1)

			// The pusher sends as fast as back-pressure lets it, until told
			// to stop; accepted counts the Sends that returned nil.
			var accepted atomic.Int64
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				body := make([]byte, size)
				for i := 0; ; i++ {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
					copy(body, fmt.Sprintf("%08d", i))
					err := push.Send(ctx, NewMsg(body))
					cancel()
					switch {
					case err == nil:
						accepted.Add(1)
					case errors.Is(err, ErrTimeout):
						i-- // not accepted: the same number again
					default:
						done <- err
						return
					}
				}
			}()
			// Wait until the pipeline is full (the puller's reader waits for
			// room in the receive queue), then stay away: the pause is
			// what is under test, not a wait for something.
			waitFor(t, "back-pressure", func() bool {
				pull.mu.Lock()
				defer pull.mu.Unlock()
				for p := range pull.pipes {
					if p.paused.Load() {
						return true
					}
				}
				return false
			})
			time.Sleep(pause)
			close(stop)
			if err := <-done; err != nil {
				t.Fatalf("Send: %v", err)
			}
			want := accepted.Load()
			for i := int64(0); i < want; i++ {
				m, err := pull.Recv(ctxT(t))
				if err != nil {
					t.Fatalf("Recv %d of %d: %v", i, want, err)
				}
				if got := string(m.Frames[0][:8]); got != fmt.Sprintf("%08d", i) {
					t.Fatalf("message %d is %q: lost or reordered", i, got)
				}
				m.Free()
			}
			for name, s := range map[string]*Socket{"pull": pull, "push": push} {
				if st := s.Stats(); st.Disconnects != 0 || st.Connects != 1 {
					t.Errorf("%s: %d connects, %d disconnects while both peers lived", name, st.Connects, st.Disconnects)
				}
			}
			if accepted.Load() < 50 {
				t.Errorf("only %d messages accepted: the test did not fill the pipeline", want)
			}
		})
	}
}

// queuedIn reports what s holds for Recv: messages of live and gone pipes.
func queuedIn(s *Socket) (msgs int, orphans int) {
	s.fq.mu.Lock()
	defer s.fq.mu.Unlock()
	for _, p := range s.fq.active {
		msgs += p.in.len()
	}
	return msgs, s.fq.orphans
}

// TestOrphansBounded: a SUB that never reads, whose publisher reconnects
// again and again, holds a bounded number of messages: those of closed
// connections count against its receive mark. (Before, each dead
// connection kept a full queue and memory grew with every reconnect.)
func TestOrphansBounded(t *testing.T) {
	const hwm = 100
	sub := newSock(t, SUB, WithRecvHWM(hwm), WithHeartbeat(20*time.Millisecond, 100*time.Millisecond))
	if err := sub.Subscribe(""); err != nil {
		t.Fatal(err)
	}
	ep := bind(t, sub)
	pub := newSock(t, PUB, WithSendHWM(hwm), WithHeartbeat(20*time.Millisecond, 2*time.Second))
	body := make([]byte, 8<<10)
	for round := 0; round < 6; round++ {
		connect(t, pub, ep)
		waitFor(t, "subscription", func() bool {
			st := pub.Stats()
			return len(st.PerPeer) == 1 && st.PerPeer[0].Subscriptions == 1
		})
		// Publish until the subscriber holds a full mark (or orphans
		// already fill one, so it takes nothing more).
		waitFor(t, "a full subscriber", func() bool {
			for i := 0; i < 50; i++ {
				if err := pub.Send(ctxT(t), NewMsg(body)); err != nil {
					t.Fatal(err)
				}
			}
			sub.fq.mu.Lock()
			defer sub.fq.mu.Unlock()
			live := 0
			for _, p := range sub.fq.active {
				if !p.isDone() {
					live += p.in.len()
				}
			}
			return live >= hwm || sub.fq.orphansFullLocked()
		})
		if err := pub.Disconnect(ep); err != nil {
			t.Fatal(err)
		}
		// A paused reader does not read the EOF behind the data it left
		// in the kernel; the heartbeat's PING write finds the peer gone.
		waitPeers0(t, sub)
		msgs, orphans := queuedIn(sub)
		// One mark for the live pipe at most, two of orphans.
		if msgs > 3*hwm {
			t.Fatalf("round %d: %d messages held (%d orphaned), want at most %d", round, msgs, orphans, 3*hwm)
		}
	}
	msgs, _ := queuedIn(sub)
	if msgs < hwm {
		t.Fatalf("only %d messages held: the subscriber was never full", msgs)
	}
	// Orphans stay deliverable, in order of arrival per connection.
	var n int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		m, err := sub.Recv(ctx)
		cancel()
		if err != nil {
			break
		}
		m.Free()
		n++
	}
	if n != msgs {
		t.Fatalf("received %d, want the %d held", n, msgs)
	}
	if _, orphans := queuedIn(sub); orphans != 0 {
		t.Fatalf("%d orphans left after draining", orphans)
	}
}

func waitPeers0(t *testing.T, s *Socket) {
	t.Helper()
	waitFor(t, "no peers", func() bool { return s.Peers() == 0 })
}

// TestOrphansFullBackPressure: while orphans fill a mark, a live pipe's
// reader waits (no loss on a PUSH/PULL pipeline), and resumes as the
// application drains.
func TestOrphansFullBackPressure(t *testing.T) {
	const hwm = 20
	pull := newSock(t, PULL, WithRecvHWM(hwm))
	ep := bind(t, pull)
	var sent []int
	var mu sync.Mutex
	next := 0
	sendN := func(push *Socket, n int) {
		for i := 0; i < n; i++ {
			mu.Lock()
			v := next
			next++
			mu.Unlock()
			if err := push.Send(ctxT(t), NewMsgString(fmt.Sprint(v))); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			sent = append(sent, v)
			mu.Unlock()
		}
	}
	// A pusher fills the puller and goes away: a mark of orphans.
	first := newSock(t, PUSH, WithLinger(5*time.Second))
	connect(t, first, ep)
	waitPeers(t, pull, 1)
	sendN(first, hwm)
	waitFor(t, "queued", func() bool { m, _ := queuedIn(pull); return m == hwm })
	first.Close()
	waitPeers0(t, pull)
	if _, orphans := queuedIn(pull); orphans != hwm {
		t.Fatalf("%d orphans, want %d", orphans, hwm)
	}
	// The next pusher's messages wait in its queue and TCP, not in the
	// puller, until the application drains.
	push := newSock(t, PUSH)
	connect(t, push, ep)
	waitPeers(t, pull, 1)
	sendN(push, 2*hwm)
	waitFor(t, "written", func() bool {
		st := push.Stats()
		return len(st.PerPeer) == 1 && st.PerPeer[0].Queued == 0
	})
	// The live pipe's reader, with messages in hand, waits for the orphans
	// to make room (a wrong reader would have queued them instead).
	waitFor(t, "the live reader to wait for room", func() bool {
		pull.mu.Lock()
		defer pull.mu.Unlock()
		for p := range pull.pipes {
			if p.paused.Load() {
				return true
			}
		}
		return false
	})
	if m, orphans := queuedIn(pull); m != orphans {
		t.Fatalf("live pipe queued %d messages while orphans filled the mark", m-orphans)
	}
	got := map[string]bool{}
	for i := 0; i < 3*hwm; i++ {
		m, err := pull.Recv(ctxT(t))
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		got[string(m.Frames[0])] = true
	}
	if len(got) != 3*hwm {
		t.Fatalf("%d distinct messages, want %d", len(got), 3*hwm)
	}
}
