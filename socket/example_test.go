package socket_test

import (
	"context"
	"fmt"
	"time"

	"github.com/zpeer/zpeer/socket"
)

// A DEALER that chooses its peer itself: the hooks tell it, synchronously,
// which peers are there, and SendTo sends to the one it picked.
func ExamplePeerHooks() {
	router, _ := socket.New(socket.ROUTER)
	defer router.Close()
	ep, _ := router.Bind("tcp://127.0.0.1:0")

	attached := make(chan *socket.Peer, 1)
	dealer, _ := socket.New(socket.DEALER, socket.WithPeerHooks(socket.PeerHooks{
		Attach: func(p *socket.Peer) { attached <- p }, // must not block: the channel has room
		Detach: func(p *socket.Peer, err error) {},
	}))
	defer dealer.Close()
	dealer.Connect(ep)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := <-attached
	fmt.Println("attached a", p.Type(), "peer")
	if err := dealer.SendTo(ctx, p, socket.NewMsgString("hello")); err != nil {
		fmt.Println(err)
		return
	}
	m, from, err := router.RecvFrom(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("ROUTER got %q from a %s peer\n", m.Body(), from.Type())
	m.Free()
	// Output:
	// attached a ROUTER peer
	// ROUTER got "hello" from a DEALER peer
}
