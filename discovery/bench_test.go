package discovery

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// Benchmarks of discovery latency. They report percentiles in
// milliseconds with b.ReportMetric; ns/op is the cost of a whole cycle and
// means little. Run:
//
//	go test -run '^$' -bench . -benchtime 200x ./discovery/
//
// Loopback benchmarks use WithLoopback; BenchmarkMultiHost needs root and
// builds network namespaces.

// latencies collects durations and reports percentiles.
type latencies []time.Duration

func (l latencies) report(b *testing.B, name string) {
	b.Helper()
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), name+"-p50-ms")
	b.ReportMetric(pct(0.95), name+"-p95-ms")
	b.ReportMetric(float64(s[len(s)-1])/float64(time.Millisecond), name+"-max-ms")
}

// BenchmarkLoopbackAnnounceAndLeave: a peer starts (Announce) while a
// watcher runs, and leaves gracefully (Close). Reports the time from
// Announce to the watcher's PeerUp event, and from Close to PeerDown.
func BenchmarkLoopbackAnnounceAndLeave(b *testing.B) {
	svc := uniqueService(b)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(b, "w"))...)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	ev := w.Events()
	var up, down latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		node := uniqueNode(b, "p")
		start := time.Now()
		a, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:44000"}, loopbackOpts(node)...)
		if err != nil {
			b.Fatal(err)
		}
		waitEvent(b, ev, 5*time.Second, func(e Event) bool { return e.Kind == PeerUp && e.Peer.Node == node })
		up = append(up, time.Since(start))
		start = time.Now()
		a.Close()
		e := waitEvent(b, ev, 5*time.Second, func(e Event) bool { return e.Kind == PeerDown && e.Peer.Node == node })
		down = append(down, time.Since(start))
		if e.Reason != ReasonGoodbye {
			b.Fatalf("down: %q", e.Reason)
		}
	}
	b.StopTimer()
	up.report(b, "discover")
	down.report(b, "leave")
}

// BenchmarkLoopbackWatcherStart: peers are already announced; a watcher
// starts. Reports the time from NewWatcher to PeerUp: the browse path
// (query and answer), not the announcement.
func BenchmarkLoopbackWatcherStart(b *testing.B) {
	svc := uniqueService(b)
	a, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:44001"}, loopbackOpts(uniqueNode(b, "p"))...)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var up latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		w, err := NewWatcher(svc, loopbackOpts(uniqueNode(b, "w"))...)
		if err != nil {
			b.Fatal(err)
		}
		waitEvent(b, w.Events(), 5*time.Second, func(e Event) bool { return e.Kind == PeerUp })
		up = append(up, time.Since(start))
		w.Close()
	}
	b.StopTimer()
	up.report(b, "browse")
}

// BenchmarkLoopbackKilled: a peer process is killed with SIGKILL (no
// goodbye). Reports the time from the kill to PeerDown, to compare with
// the expiry (reported as expiry-ms), and the same with ReportUnreachable
// called at the kill, as the socket layer does on connection loss.
func BenchmarkLoopbackKilled(b *testing.B) {
	for _, mode := range []string{"expiry", "unreachable"} {
		b.Run(mode, func(b *testing.B) {
			svc := uniqueService(b)
			opts := loopbackOpts(uniqueNode(b, "w"))
			if mode == "unreachable" {
				opts = append(opts, WithExpiry(time.Minute))
			}
			w, err := NewWatcher(svc, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			ev := w.Events()
			var down latencies
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				node := uniqueNode(b, "k")
				ep := fmt.Sprintf("tcp://127.0.0.1:%d", 44100+i%100)
				h := startHelper(b, helperConfig{Service: svc, Node: node, Loopback: true, Endpoint: ep,
					Refresh: testRefresh, Expiry: testExpiry})
				waitEvent(b, ev, 5*time.Second, func(e Event) bool { return e.Kind == PeerUp && e.Peer.Node == node })
				start := time.Now()
				h.kill(b)
				if mode == "unreachable" {
					w.ReportUnreachable(ep)
				}
				waitEvent(b, ev, 5*time.Second, func(e Event) bool { return e.Kind == PeerDown && e.Peer.Node == node })
				down = append(down, time.Since(start))
			}
			b.StopTimer()
			down.report(b, "killed-down")
			if mode == "expiry" {
				b.ReportMetric(float64(testExpiry)/float64(time.Millisecond), "expiry-ms")
			} else {
				b.ReportMetric(float64(DefaultUnreachableTimeout)/float64(time.Millisecond), "unreachable-timeout-ms")
			}
		})
	}
}

// BenchmarkMultiHost: two hosts in network namespaces; a watcher on host 1
// (default interfaces), a peer process started, stopped and killed on host
// 2. Times come from the two processes' event timestamps.
func BenchmarkMultiHost(b *testing.B) {
	lab := newLab(b, 2)
	svc := uniqueService(b)
	const expiry = time.Second
	watcher := startHelper(b, helperConfig{Service: svc, Node: uniqueNode(b, "w"), Endpoint: "tcp://*:5555", Watch: true,
		Refresh: testRefresh, Expiry: expiry}, lab.Command(0)...)
	defer watcher.stop(b)
	var up, leave, killed latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		node := uniqueNode(b, "p")
		p := startHelper(b, helperConfig{Service: svc, Node: node, Endpoint: "tcp://*:5556",
			Refresh: testRefresh, Expiry: expiry}, lab.Command(1)...)
		l := watcher.next(b, 5*time.Second, func(l helperLine) bool { return l.Kind == "up" && l.Node == node })
		up = append(up, time.Unix(0, l.Time).Sub(p.announced))
		var start time.Time
		if i%4 == 3 { // every fourth peer is killed
			start = time.Now()
			p.kill(b)
		} else {
			start = p.stop(b)
		}
		l = watcher.next(b, 5*time.Second, func(l helperLine) bool { return l.Kind == "down" && l.Node == node })
		d := time.Unix(0, l.Time).Sub(start)
		if l.Reason == ReasonGoodbye {
			leave = append(leave, d)
		} else {
			killed = append(killed, d)
		}
	}
	b.StopTimer()
	up.report(b, "discover")
	leave.report(b, "leave")
	killed.report(b, "killed-down")
}
