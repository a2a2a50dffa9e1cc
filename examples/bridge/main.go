// Command bridge connects plain ZeroMQ programs to zpeer: it takes the raw
// two-frame readings, [name, value], that a stock pyzmq (or libzmq) sensor
// publishes, and republishes them as typed zpeer messages (msgpack
// envelopes with id, timestamp, sender and sequence number) that any
// pattern.Subscriber[Reading] receives. It answers the sensor's raw REQ
// queries too. On the wire both sides are ZMTP 3: the pyzmq program is not
// modified, and has no idea zpeer exists.
//
//	go run ./examples/bridge -listen tcp://127.0.0.1:5560 -query tcp://127.0.0.1:5561 -bind tcp://127.0.0.1:5562
//	/usr/bin/python3 examples/bridge/sensor.py --connect tcp://127.0.0.1:5560 --query tcp://127.0.0.1:5561
//	zpeer sub --connect tcp://127.0.0.1:5562
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// Reading is what the bridge publishes on topic "sensor.NAME".
type Reading struct {
	Name  string
	Value float64
	Raw   string // the value as the sensor sent it
}

func main() {
	var (
		listen = flag.String("listen", "tcp://127.0.0.1:0", "raw side: the SUB endpoint sensors connect their PUB to")
		query  = flag.String("query", "tcp://127.0.0.1:0", "raw side: the REP endpoint answering \"NAME\" with the last value")
		bind   = flag.String("bind", "tcp://127.0.0.1:0", "zpeer side: the Publisher's endpoint")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bridge: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bridge(ctx, *listen, *query, *bind); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func bridge(ctx context.Context, listen, query, bind string) error {
	// The raw side: plain ZeroMQ sockets, plain frames.
	sub, err := socket.New(socket.SUB)
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.Subscribe(""); err != nil {
		return err
	}
	subEP, err := sub.Bind(listen)
	if err != nil {
		return err
	}
	rep, err := socket.New(socket.REP)
	if err != nil {
		return err
	}
	defer rep.Close()
	repEP, err := rep.Bind(query)
	if err != nil {
		return err
	}
	// The zpeer side: typed messages in envelopes.
	pub, err := pattern.NewPublisher[Reading](pattern.WithBind(bind), pattern.WithName("bridge"))
	if err != nil {
		return err
	}
	defer pub.Close()
	fmt.Printf("bridge: sensors publish to %s, query %s; zpeer subscribers connect to %s\n", subEP, repEP, pub.Endpoints()[0])

	var mu sync.Mutex
	last := make(map[string]string)
	go func() {
		for {
			m, err := rep.Recv(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			v, ok := last[string(m.Body())]
			mu.Unlock()
			if !ok {
				v = "unknown"
			}
			if err := rep.Send(ctx, socket.NewMsgString(v)); err != nil {
				return
			}
		}
	}()

	n := 0
	for {
		m, err := sub.Recv(ctx)
		if err != nil {
			return err
		}
		if len(m.Frames) != 2 {
			log.Printf("skipping a message of %d frames (want [name, value])", len(m.Frames))
			continue
		}
		name, raw := string(m.Frames[0]), string(m.Frames[1])
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			log.Printf("skipping %s=%q: not a number", name, raw)
			continue
		}
		mu.Lock()
		last[name] = raw
		mu.Unlock()
		if err := pub.Publish(ctx, "sensor."+name, Reading{Name: name, Value: v, Raw: raw}); err != nil {
			return err
		}
		if n++; n%50 == 1 {
			fmt.Printf("bridge: %d readings bridged (last %s=%s)\n", n, name, raw)
		}
	}
}
