package socket

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// readerStream is a ZMTP message stream as a PUSH peer writes it: messages
// of every frame size class around the reader's boundaries (empty, short
// and long headers, the slab limit), multi-frame messages, and PINGs
// between them. It returns the stream, the messages in order and their
// body bytes.
func readerStream(n int) (stream []byte, want [][][]byte, bytes uint64) {
	sizes := []int{0, 1, 64, 255, 256, 1000, 1024, 1025, 3000}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		nf := 1
		if i%5 == 0 {
			nf = 1 + r.IntN(4)
		}
		var msg [][]byte
		for k := range nf {
			body := make([]byte, sizes[r.IntN(len(sizes))])
			for j := range body {
				body[j] = byte(i + k + j)
			}
			fl := byte(0)
			if k < nf-1 {
				fl = flagMore
			}
			stream = append(stream, zmtpFrame(fl, body)...)
			msg = append(msg, body)
			bytes += uint64(len(body))
		}
		want = append(want, msg)
		if i%17 == 0 {
			stream = append(stream, zmtpCommand("PING", []byte{0, 10, 'c', byte(i)})...)
		}
	}
	return stream, want, bytes
}

// TestReaderParsesBufferedStream: the reader takes messages whole from its
// read buffer many at a time, and frame by frame where a frame is cut by
// the end of what arrived: written in one piece or in pieces cut anywhere,
// the same stream arrives as the same messages, in order, with every PING
// answered and every message counted.
func TestReaderParsesBufferedStream(t *testing.T) {
	stream, want, wantBytes := readerStream(2000)
	pings := 0
	for i := range want {
		if i%17 == 0 {
			pings++
		}
	}
	for _, tc := range []struct {
		name string
		cut  func(r *rand.Rand) int // the next piece's length
	}{
		{"whole", func(*rand.Rand) int { return len(stream) }},
		{"bytes", func(r *rand.Rand) int { return 1 + r.IntN(7) }},
		{"pieces", func(r *rand.Rand) int { return 1 + r.IntN(5000) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pull := newSock(t, PULL, WithMaxMsgSize(16<<10))
			ep := bind(t, pull)
			c := dialRaw(t, ep)
			rawHandshake(t, c, "PUSH")
			pongs := make(chan error, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				for i := 0; i < pings; {
					fl, body, err := readFrame(c)
					if err == nil && fl&flagCommand != 0 && bytes.HasPrefix(body, []byte("\x04PING")) {
						continue // the socket's own heartbeat (a slow run outlasts its 5 s interval)
					}
					if err == nil && (fl&flagCommand == 0 || !bytes.HasPrefix(body, []byte("\x04PONGc"))) {
						err = fmt.Errorf("reply %d: flags %#x %q, want a PONG", i, fl, body)
					}
					if err != nil {
						pongs <- err
						return
					}
					i++
				}
				pongs <- nil
			}()
			r := rand.New(rand.NewPCG(5, 6))
			go func() {
				for rest := stream; len(rest) > 0; {
					n := min(tc.cut(r), len(rest))
					if _, err := c.Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
			}()
			ctx := ctxT(t)
			for i, w := range want {
				m, err := pull.Recv(ctx)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if len(m.Frames) != len(w) {
					t.Fatalf("message %d: %d frames, want %d", i, len(m.Frames), len(w))
				}
				for k := range w {
					if !bytes.Equal(m.Frames[k], w[k]) {
						t.Fatalf("message %d frame %d: %d bytes differ from the %d sent", i, k, len(m.Frames[k]), len(w[k]))
					}
				}
				m.Free()
			}
			if st := pull.Stats(); st.MsgsIn != uint64(len(want)) || st.BytesIn != wantBytes {
				t.Fatalf("counted %d messages, %d bytes; received %d, %d", st.MsgsIn, st.BytesIn, len(want), wantBytes)
			}
			if err := <-pongs; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReaderRejectsAfterBufferedMessages: a frame the reader must refuse
// (over the size limit, reserved flag bits, a command inside a message)
// that arrives in the same read as good messages ends the connection after
// those messages are delivered, as when it arrives alone.
func TestReaderRejectsAfterBufferedMessages(t *testing.T) {
	good := append(zmtpFrame(0, []byte("one")), zmtpFrame(0, []byte("two"))...)
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"oversized", zmtpFrame(0, make([]byte, 200))},
		{"flags", []byte{0x40, 1, 'x'}},
		{"command inside", append(zmtpFrame(flagMore, []byte("a")), zmtpCommand("PING", []byte{0, 1})...)},
		{"message over the limit", append(zmtpFrame(flagMore, make([]byte, 80)), zmtpFrame(0, make([]byte, 80))...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pull := newSock(t, PULL, WithMaxMsgSize(100))
			ep := bind(t, pull)
			c := dialRaw(t, ep)
			rawHandshake(t, c, "PUSH")
			if _, err := c.Write(append(append([]byte{}, good...), tc.bad...)); err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"one", "two"} {
				if got := recvString(t, pull); len(got) != 1 || got[0] != w {
					t.Fatalf("got %q, want %q", got, w)
				}
			}
			expectClosed(t, c, 10*time.Second)
			waitFor(t, "peer dropped", func() bool { return pull.Peers() == 0 })
			// Everything the reader took was queued before the peer was
			// dropped: a cancelled context polls.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if m, err := pull.Recv(ctx); err == nil {
				t.Fatalf("received %q from the refused frame", m.Frames)
			}
		})
	}
}
