package pattern

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/zpeer/zpeer/socket"
)

// goroutines counts the process's goroutines by what created them.
type goroutines struct {
	total   int
	pattern int      // created by package pattern
	created []string // by whom, for pattern
	engine  int      // created by package socket, handshakes excepted
	shaking int      // in a handshake (transient)
}

func countGoroutines() goroutines {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var g goroutines
	for _, st := range strings.Split(string(buf), "\n\n") {
		g.total++
		creator := "" // the function that started it, and its file
		if i := strings.Index(st, "\ncreated by "); i >= 0 {
			creator = st[i+len("\ncreated by "):]
		}
		fromTest := strings.Contains(creator, "_test.go:")
		switch {
		case strings.Contains(st, "zpeer/socket.(*Socket).handshake"):
			g.shaking++
		case fromTest:
		case strings.HasPrefix(creator, "github.com/zpeer/zpeer/pattern."):
			g.pattern++
			g.created = append(g.created, strings.SplitN(creator, "\n", 2)[0])
		case strings.HasPrefix(creator, "github.com/zpeer/zpeer/socket."):
			g.engine++
		}
	}
	return g
}

// settled counts goroutines once no connection is in its handshake and
// the pattern's count holds still between two looks: a goroutine whose
// WaitGroup was released (a closed role of an earlier subtest) may still
// be on its way out for a moment.
func settled(t *testing.T) goroutines {
	t.Helper()
	var g goroutines
	prev := -1
	waitFor(t, "goroutines to settle", func() bool {
		g = countGoroutines()
		ok := g.shaking == 0 && g.pattern == prev
		prev = g.pattern
		return ok
	})
	return g
}

// TestGoroutinesPerPeer counts the goroutines each pattern role adds per
// connected peer (docs/patterns.md has the table). Both ends of every
// connection live in this process: the role's counterparts are created
// before the count starts and add only their end of each connection.
// Pattern goroutines are counted by their creator, so they are the
// measured role's own; engine goroutines are both ends' (and the dialer
// of the end that connects).
func TestGoroutinesPerPeer(t *testing.T) {
	const k = 4
	nop := func(context.Context, int) error { return nil }
	type setup struct {
		connect func() error // connects the k peers
		up      func() bool  // they are connected
	}
	rawDialers := func(t *testing.T, typ socket.Type, target string) setup {
		var socks []*socket.Socket
		for range k {
			s, err := socket.New(typ)
			socks = append(socks, cleanup(t, s, err))
		}
		return setup{
			connect: func() error {
				for _, s := range socks {
					if err := s.Connect(target); err != nil {
						return err
					}
				}
				return nil
			},
			up: func() bool {
				for _, s := range socks {
					if s.Peers() != 1 {
						return false
					}
				}
				return true
			},
		}
	}
	connectAll := func(c Connector, eps []string) func() error {
		return func() error {
			for _, e := range eps {
				if err := c.Connect(e); err != nil {
					return err
				}
			}
			return nil
		}
	}
	roles := []struct {
		name string
		make func(t *testing.T) setup
	}{
		{"Requester", func(t *testing.T) setup {
			var eps []string
			for range k {
				eps = append(eps, ep(t, newStringReplier(t, "r")))
			}
			rq, err := NewRequester[string, string]()
			rq = cleanup(t, rq, err)
			return setup{connectAll(rq, eps), func() bool { return rq.Peers() == k }}
		}},
		{"Replier", func(t *testing.T) setup {
			return rawDialers(t, socket.DEALER, ep(t, newStringReplier(t, "r")))
		}},
		{"Pusher", func(t *testing.T) setup {
			p, err := NewPusher[int](WithBind(loopback))
			p = cleanup(t, p, err)
			return rawDialers(t, socket.PULL, ep(t, p))
		}},
		{"Puller", func(t *testing.T) setup {
			var eps []string
			for range k {
				p, err := NewPusher[int](WithBind(loopback))
				eps = append(eps, ep(t, cleanup(t, p, err)))
			}
			pl, err := NewPuller(nop, WithWorkers(8))
			pl = cleanup(t, pl, err)
			return setup{connectAll(pl, eps), func() bool { return pl.Pushers() == k }}
		}},
		{"Pusher (acked)", func(t *testing.T) setup {
			p, err := NewPusher[int](WithBind(loopback), WithAck())
			p = cleanup(t, p, err)
			return rawDialers(t, socket.DEALER, ep(t, p))
		}},
		{"Puller (acked)", func(t *testing.T) setup {
			var pushers []*Pusher[int]
			var eps []string
			for range k {
				p, err := NewPusher[int](WithBind(loopback), WithAck())
				p = cleanup(t, p, err)
				pushers = append(pushers, p)
				eps = append(eps, ep(t, p))
			}
			pl, err := NewPuller(nop, WithAck(), WithWorkers(8))
			pl = cleanup(t, pl, err)
			return setup{connectAll(pl, eps), func() bool {
				for _, p := range pushers {
					if len(p.Stats().Peers) != 1 { // its credit arrived
						return false
					}
				}
				return pl.Pushers() == k
			}}
		}},
		{"Publisher", func(t *testing.T) setup {
			p, err := NewPublisher[int](WithBind(loopback))
			p = cleanup(t, p, err)
			return rawDialers(t, socket.SUB, ep(t, p))
		}},
		{"Subscriber", func(t *testing.T) setup {
			var eps []string
			for range k {
				p, err := NewPublisher[int](WithBind(loopback))
				eps = append(eps, ep(t, cleanup(t, p, err)))
			}
			s, err := NewSubscriber[int](WithTopics(""))
			s = cleanup(t, s, err)
			return setup{connectAll(s, eps), func() bool { return s.Publishers() == k }}
		}},
	}
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			s := r.make(t)
			before := settled(t)
			if err := s.connect(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "peers connected", s.up)
			after := settled(t)
			per := func(a, b int) float64 { return float64(a-b) / k }
			t.Logf("%-15s per peer: %4.1f in the pattern, %4.1f in the engine (both ends), %4.1f in all",
				r.name, per(after.pattern, before.pattern), per(after.engine, before.engine), per(after.total, before.total))
			if after.pattern != before.pattern {
				t.Errorf("%s: %d pattern goroutines for %d peers, want none (before: %q, after: %q)", r.name,
					after.pattern-before.pattern, k, before.created, after.created)
			}
		})
	}
}
