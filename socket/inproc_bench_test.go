package socket

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkInprocSide measures each side of an inproc PUSH->PULL stream
// alone, with nothing crossing between cores: "send" times Sends into a
// receiver whose mark holds a whole batch, "recv" times Recvs (and Frees)
// of a batch sent beforehand. Their sum is the CPU a message costs; the
// larger of the two bounds the rate of a stream with a core per side.
func BenchmarkInprocSide(b *testing.B) {
	const batch = 1 << 10
	for _, side := range []string{"send", "recv"} {
		b.Run(side, func(b *testing.B) {
			pull := newSock(b, PULL, WithRecvHWM(batch+1), WithHWMBytes(1<<30, 1<<30))
			push := newSock(b, PUSH)
			ep := bindInproc(b, pull)
			connect(b, push, ep)
			waitPeers(b, push, 1)
			ctx := context.Background()
			msg := Msg{Frames: [][]byte{make([]byte, 64)}}
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				n := min(batch, b.N-done)
				if side == "recv" {
					b.StopTimer()
				}
				for range n {
					if err := push.Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				if side == "recv" {
					b.StartTimer()
				} else {
					b.StopTimer()
				}
				for range n {
					m, err := pull.Recv(ctx)
					if err != nil {
						b.Fatal(err)
					}
					m.Free()
				}
				if side == "send" {
					b.StartTimer()
				}
			}
		})
	}
}

// BenchmarkInprocHWM is BenchmarkInprocPushPull/64B at several receive
// marks: a stream waits and wakes once per half a mark or so, so a small
// mark shows what a wait and a wake-up cost per message, a large one what
// ring and slab memory outgrowing the caches costs.
func BenchmarkInprocHWM(b *testing.B) {
	for _, hwm := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(hwm), func(b *testing.B) {
			pull := newSock(b, PULL, WithRecvHWM(hwm))
			push := newSock(b, PUSH)
			ep := bindInproc(b, pull)
			connect(b, push, ep)
			pushPullLoop(b, pull, push, 64)
		})
	}
}
