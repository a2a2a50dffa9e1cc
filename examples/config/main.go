// Command config is a replicated configuration: one config server holds
// the settings, and every agent keeps a copy that follows each change as
// it is made, found over mDNS with no address typed.
//
// Start the server, then agents (on this machine, mDNS on lo):
//
//	go run ./examples/config -role server -iface lo
//	go run ./examples/config -role agent -name a1 -iface lo
//
// Type KEY=VALUE lines into the server (KEY= removes a setting): each
// agent applies the change at once. An agent started later gets the
// current settings first; one that misses changes, or whose server
// restarted, gets them again from a fresh snapshot. The server is the one
// writer of the configuration: this is replication, not consensus.
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
	"strings"
	"syscall"
	"time"

	"github.com/zpeer/zpeer/discovery"
	"github.com/zpeer/zpeer/pattern"
)

// Setting is one configuration value with where it came from: any
// msgpack-encodable type will do as a state's value.
type Setting struct {
	Value   string    `msgpack:"value"`
	By      string    `msgpack:"by"`
	Changed time.Time `msgpack:"changed"`
}

// defaults is the configuration a server starts with.
var defaults = map[string]string{"log.level": "info", "pool.size": "4", "feature.search": "off"}

func main() {
	var (
		role    = flag.String("role", "agent", "server or agent")
		name    = flag.String("name", "agent", "this process's name")
		service = flag.String("service", "config", "the service name announced and browsed over mDNS")
		iface   = flag.String("iface", "", "network interface for mDNS (lo: this machine only; default all)")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("config: ")
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
	switch *role {
	case "server":
		err = runServer(ctx, *service, *name, opts)
	case "agent":
		err = runAgent(ctx, *service, *name, opts)
	default:
		err = fmt.Errorf("unknown -role %q (server or agent)", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// runServer holds the configuration: the defaults, then every KEY=VALUE
// line of standard input, until interrupted.
func runServer(ctx context.Context, service, name string, opts []discovery.Option) error {
	bind := "tcp://0.0.0.0:0"
	if len(opts) > 0 {
		bind = "tcp://127.0.0.1:0"
	}
	// The defaults are the state it starts with, in place before it is
	// announced: an agent never sees an empty configuration, even from a
	// server that has just restarted.
	initial := make(map[string]Setting, len(defaults))
	for k, v := range defaults {
		initial[k] = Setting{Value: v, By: name, Changed: time.Now()}
	}
	srv, err := pattern.NewStateServer[Setting](pattern.WithBind(bind), pattern.WithService(service, opts...),
		pattern.WithInitialState(initial))
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("server %s serving %d settings at %s\n", name, srv.Len(), strings.Join(srv.Endpoints(), " "))
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case line, ok := <-lines:
			if !ok {
				lines = nil // keep serving
				continue
			}
			key, value, found := strings.Cut(strings.TrimSpace(line), "=")
			switch {
			case !found || key == "":
				log.Printf("want KEY=VALUE, got %q", line)
				continue
			case value == "":
				err = srv.Delete(key)
			default:
				err = srv.Set(key, Setting{Value: value, By: name, Changed: time.Now()})
			}
			if err != nil {
				return err
			}
			fmt.Printf("server %s: %s=%s (seq %d)\n", name, key, value, srv.Seq())
		}
	}
}

// runAgent mirrors the configuration and applies each change, until
// interrupted.
func runAgent(ctx context.Context, service, name string, opts []discovery.Option) error {
	m, err := pattern.NewMirror[Setting](pattern.WithService(service, opts...), pattern.WithName(name))
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.WaitSynced(ctx); err != nil {
		return err
	}
	// The settings now and a watch of every change after them: nothing is
	// missed or seen twice in between.
	settings, w := m.Watch("")
	defer w.Close()
	var now []string
	for _, s := range settings {
		now = append(now, s.Key+"="+s.Value.Value)
	}
	fmt.Printf("agent %s synced: %d settings at seq %d: %s\n", name, len(settings), m.Seq(), strings.Join(now, " "))
	for {
		c, err := w.Next(ctx)
		if err != nil {
			return err
		}
		how := fmt.Sprintf("seq %d", c.Seq)
		if c.Resync {
			how = "re-sync"
		}
		if c.Deleted {
			fmt.Printf("agent %s removes %s (%s)\n", name, c.Key, how)
			continue
		}
		fmt.Printf("agent %s applies %s=%s from %s (%s)\n", name, c.Key, c.Value.Value, c.Value.By, how)
	}
}
