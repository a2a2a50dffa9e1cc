// Command chat is a chat room on the LAN with no address typed: each peer
// publishes what you type and subscribes to everyone else in the room,
// finding them over mDNS.
//
//	go run ./examples/chat -room lobby -name alice
//	go run ./examples/chat -room lobby -name bob        # on another machine of the LAN
//
// -iface lo keeps it on this machine (run two in two terminals).
//
// Each peer is a Publisher bound on a free port and announced under the
// service "zpchat", and a Subscriber that connects to every other chat
// publisher it discovers and subscribes to the room's topic. Rooms are
// topics: a peer receives only its room.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
)

// Line is one chat message.
type Line struct {
	From string
	Text string
}

const service = "zpchat"

func main() {
	var (
		room  = flag.String("room", "lobby", "the room to join")
		name  = flag.String("name", "", "your name (default: the host name)")
		iface = flag.String("iface", "", "network interface for mDNS (lo: this machine only; default all)")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("chat: ")
	if *name == "" {
		*name, _ = os.Hostname()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chat(ctx, *room, *name, *iface); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func chat(ctx context.Context, room, name, iface string) error {
	// One node id for our announcement and our watcher, so that the
	// watcher ignores our own announcement (each would draw its own).
	opts := []discovery.Option{discovery.WithNodeID(discovery.NodeID())}
	bind := "tcp://0.0.0.0:0"
	switch iface {
	case "":
	case "lo":
		opts, bind = append(opts, discovery.WithLoopback()), "tcp://127.0.0.1:0"
	default:
		opts = append(opts, discovery.WithInterfaces(iface))
	}
	topic := room + "\n" // a room's topic is not a prefix of another room's

	pub, err := pattern.NewPublisher[Line](pattern.WithBind(bind), pattern.WithName(name))
	if err != nil {
		return err
	}
	defer pub.Close()
	ann, err := discovery.Announce(service, "PUB", pub.Endpoints(), append(opts,
		discovery.WithMeta(map[string]string{"name": name, "room": room}))...)
	if err != nil {
		return err
	}
	defer ann.Close() // goodbye: the others see us leave at once

	w, err := discovery.NewWatcher(service, opts...) // ignores our own announcement (same node id)
	if err != nil {
		return err
	}
	defer w.Close()
	sub, err := pattern.NewSubscriber[Line](pattern.WithTopics(topic), pattern.WithName(name),
		pattern.WithDiscovery(func(ctx context.Context, c pattern.Connector) error {
			return discovery.AutoConnect(ctx, w, c, "SUB")
		}))
	if err != nil {
		return err
	}
	defer sub.Close()
	fmt.Printf("* %s joined %s; type a line to send it, Ctrl-D to leave\n", name, room)

	// Who comes and goes in this room.
	go func() {
		for ev := range w.Subscribe(ctx) {
			if ev.Peer.Meta["room"] != room {
				continue
			}
			switch ev.Kind {
			case discovery.PeerUp:
				fmt.Printf("* %s is here\n", ev.Peer.Meta["name"])
			case discovery.PeerDown:
				fmt.Printf("* %s left (%s)\n", ev.Peer.Meta["name"], ev.Reason)
			}
		}
	}()
	// What the others say.
	go func() {
		for {
			m, err := sub.Recv(ctx)
			if err != nil {
				return
			}
			fmt.Printf("[%s] %s: %s\n", m.Timestamp.Format("15:04:05"), m.Value.From, m.Value.Text)
		}
	}()
	// What we say.
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case text, ok := <-lines:
			if !ok {
				fmt.Printf("* %s left %s\n", name, room)
				return nil
			}
			if text == "" {
				continue
			}
			if err := pub.Publish(ctx, topic, Line{From: name, Text: text}); err != nil {
				return err
			}
		}
	}
}
