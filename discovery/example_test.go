package discovery_test

import (
	"context"
	"fmt"
	"os"

	"github.com/zpeer/zpeer/discovery"
)

// service returns a service name unique to this process, so that two test
// runs on one machine do not see each other's peers. A program uses a fixed
// name, such as "telemetry".
func service(prefix string) string { return fmt.Sprintf("%s%d", prefix, os.Getpid()) }

// A peer that binds announces itself; a watcher on the same service sees
// it come and go. WithLoopback keeps everything on this machine.
func ExampleAnnounce() {
	svc := service("ex-a")
	w, err := discovery.NewWatcher(svc, discovery.WithLoopback())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	a, err := discovery.Announce(svc, "PUB", []string{"tcp://*:5555"},
		discovery.WithLoopback(), discovery.WithNodeID("example-pub"),
		discovery.WithMeta(map[string]string{"region": "eu"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := <-w.Events()
	fmt.Println(ev.Kind, ev.Peer.Type, ev.Peer.Endpoint(), ev.Peer.Meta["region"])

	a.Close() // goodbyes
	ev = <-w.Events()
	fmt.Println(ev.Kind, ev.Reason)
	// Output:
	// up PUB tcp://127.0.0.1:5555 eu
	// down goodbye
}

// printer stands for a socket.
type printer struct{ connected, done chan struct{} }

func (p printer) Connect(ep string) error {
	fmt.Println("connect", ep)
	p.connected <- struct{}{}
	return nil
}

func (p printer) Disconnect(ep string) error {
	fmt.Println("disconnect", ep)
	close(p.done)
	return nil
}

// A SUB socket joined to a service connects to every PUB that appears and
// disconnects when it goes.
func ExampleAutoConnect() {
	svc := service("ex-b")
	w, err := discovery.NewWatcher(svc, discovery.WithLoopback())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	sub := printer{connected: make(chan struct{}, 1), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error)
	go func() { stopped <- discovery.AutoConnect(ctx, w, sub, "SUB") }()

	// The PUSH is no peer for a SUB; the PUB is.
	for i, t := range []string{"PUSH", "PUB"} {
		a, err := discovery.Announce(svc, t, []string{fmt.Sprintf("tcp://127.0.0.1:%d", 6000+i)},
			discovery.WithLoopback(), discovery.WithNodeID("example-"+t))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer a.Close()
	}
	<-sub.connected
	cancel() // AutoConnect disconnects what it connected, and returns
	<-sub.done
	fmt.Println(<-stopped)
	// Output:
	// connect tcp://127.0.0.1:6001
	// disconnect tcp://127.0.0.1:6001
	// context canceled
}
