package pattern

import (
	"context"
	"testing"
	"time"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/socket"
)

func BenchmarkMixTypedPushRawPull(b *testing.B) {
	push, err := NewPusher[[]byte](WithBind(loopback))
	push = cleanup(b, push, err)
	pull, err := socket.New(socket.PULL)
	pull = cleanup(b, pull, err)
	pull.Connect(ep(b, push))
	waitFor(b, "puller", func() bool { return push.Pullers() == 1 })
	payload := benchPayload()
	ctx := context.Background()
	done := make(chan struct{})
	n := b.N
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		for range n {
			pull.Recv(ctx)
		}
	}()
	for range n {
		push.Push(ctx, payload)
	}
	<-done
	reportRate(b, n, start)
}

func BenchmarkMixRawPushTypedPull(b *testing.B) {
	push, err := socket.New(socket.PUSH)
	push = cleanup(b, push, err)
	pep, _ := push.Bind(loopback)
	done := make(chan struct{})
	var got int
	n := b.N
	pl, err := NewPuller(func(_ context.Context, v []byte) error {
		got++
		if got == n {
			close(done)
		}
		return nil
	}, WithConnect(pep), WithWorkers(1))
	pl = cleanup(b, pl, err)
	waitFor(b, "puller", func() bool { return push.Peers() == 1 })
	body, _ := codec.MarshalValue(benchPayload())
	env := codec.Envelope{ID: codec.NewID(), Body: body, Sender: "abcdefabcdefabcd", Timestamp: time.Now().UnixNano()}
	frame, _ := codec.Encode(&env)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for range n {
		push.Send(ctx, socket.Msg{Frames: [][]byte{frame}})
	}
	<-done
	reportRate(b, n, start)
}

func BenchmarkMixRawEnvelope(b *testing.B) {
	push, err := socket.New(socket.PUSH)
	push = cleanup(b, push, err)
	pep, _ := push.Bind(loopback)
	pull, err := socket.New(socket.PULL)
	pull = cleanup(b, pull, err)
	pull.Connect(pep)
	waitFor(b, "puller", func() bool { return push.Peers() == 1 })
	body, _ := codec.MarshalValue(benchPayload())
	env := codec.Envelope{ID: codec.NewID(), Body: body, Sender: "abcdefabcdefabcd", Timestamp: time.Now().UnixNano()}
	frame, _ := codec.Encode(&env)
	ctx := context.Background()
	done := make(chan struct{})
	n := b.N
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		for range n {
			pull.Recv(ctx)
		}
	}()
	for range n {
		push.Send(ctx, socket.Msg{Frames: [][]byte{frame}})
	}
	<-done
	reportRate(b, n, start)
}
