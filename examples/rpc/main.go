// Command rpc is a typed request/reply service with replicas and
// fail-over, found over mDNS: no address is typed.
//
// Start two replicas, then a caller:
//
//	go run ./examples/rpc -serve -name r1 -iface lo
//	go run ./examples/rpc -serve -name r2 -iface lo
//	go run ./examples/rpc -calls 20 -iface lo
//
// Kill a replica while the caller runs: its requests fail over to the
// other replica and every call still gets its answer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
)

// Add is the request, Sum the reply: any msgpack-encodable types will do.
type Add struct {
	A, B int
}

type Sum struct {
	Value int
	By    string // the replica that answered
}

func main() {
	var (
		serve    = flag.Bool("serve", false, "run a replica (default: run a caller)")
		name     = flag.String("name", "replica", "the replica's name")
		service  = flag.String("service", "adder", "the service name announced and browsed over mDNS")
		iface    = flag.String("iface", "", "network interface for mDNS (lo: this machine only; default all)")
		calls    = flag.Int("calls", 10, "caller: number of calls")
		interval = flag.Duration("interval", 100*time.Millisecond, "caller: pause between calls")
		replicas = flag.Int("replicas", 1, "caller: wait for this many replicas before calling")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("rpc: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var opts []discovery.Option
	switch *iface {
	case "":
	case "lo":
		opts = append(opts, discovery.WithLoopback())
	default:
		opts = append(opts, discovery.WithInterfaces(*iface))
	}
	var err error
	if *serve {
		err = runReplica(ctx, *service, *name, opts)
	} else {
		err = runCaller(ctx, *service, *calls, *replicas, *interval, opts)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// runReplica answers Add requests until interrupted.
func runReplica(ctx context.Context, service, name string, opts []discovery.Option) error {
	bind := "tcp://0.0.0.0:0"
	if len(opts) > 0 {
		bind = "tcp://127.0.0.1:0"
	}
	rep, err := pattern.NewReplier(func(_ context.Context, q Add) (Sum, error) {
		return Sum{Value: q.A + q.B, By: name}, nil
	}, pattern.WithBind(bind), pattern.WithName(name))
	if err != nil {
		return err
	}
	defer rep.Close()
	ann, err := discovery.Announce(service, "REP", rep.Endpoints(), opts...)
	if err != nil {
		return err
	}
	defer ann.Close() // goodbye: callers stop choosing this replica at once
	fmt.Printf("replica %s serving %s at %v\n", name, service, rep.Endpoints())
	<-ctx.Done()
	return ctx.Err()
}

// runCaller finds the replicas and makes the calls; it fails if any call
// gets no answer.
func runCaller(ctx context.Context, service string, calls, replicas int, interval time.Duration, opts []discovery.Option) error {
	w, err := discovery.NewWatcher(service, opts...)
	if err != nil {
		return err
	}
	defer w.Close()
	req, err := pattern.NewRequester[Add, Sum](
		pattern.WithDiscovery(func(ctx context.Context, c pattern.Connector) error {
			return discovery.AutoConnect(ctx, w, c, "REQ")
		}),
		pattern.WithTimeout(time.Second), // an attempt with no answer by then goes to another replica
		pattern.WithRetries(5))
	if err != nil {
		return err
	}
	defer req.Close()

	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for req.Peers() < replicas {
		select {
		case <-wait.Done():
			return fmt.Errorf("found %d of %d replicas of %s", req.Peers(), replicas, service)
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Printf("found %d replicas of %s\n", req.Peers(), service)

	failed := 0
	for i := 1; i <= calls; i++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sum, err := req.Request(cctx, Add{A: i, B: i * 10})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			fmt.Printf("call %d: %v\n", i, err)
		} else {
			fmt.Printf("call %d: %d+%d=%d (by %s)\n", i, i, i*10, sum.Value, sum.By)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	st := req.Stats()
	fmt.Printf("%d calls, %d failed, %d attempts re-sent to another replica\n", calls, failed, st.Retried)
	if failed > 0 {
		return fmt.Errorf("%d calls failed", failed)
	}
	return nil
}
