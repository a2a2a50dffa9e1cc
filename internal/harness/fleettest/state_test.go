package fleettest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/fleet"
)

// The replicated state on a fleet.
const (
	stateHosts    = 32
	stateKeys     = 200 // keys the stream sets and deletes
	stateBatch    = 50  // changes per batch, then a batch=N marker
	stateKillAt   = 10  // the victim mirror dies after this batch
	stateStartAt  = 20  // and starts again after this one
	stateAfter    = 10  // batches after the restarted mirror has synced
	stateMax      = 500 // batches at most
	stateDeadline = time.Minute
)

// TestFleetReplicatedState runs a replicated state on 32 hosts with the
// zpeer command: a server (state serve --discover) on host 0, and a
// mirror (state get --watch --discover) on every host, the server's
// included, finding it over mDNS. The test streams batches of changes
// into the server (sets and deletes over 200 keys, each batch ending with
// batch=N, paced by one mirror's seeing each marker); one mirror is
// killed with SIGKILL after batch 10 and started again after batch 20,
// while the stream goes on until it has synced and 10 batches more. At
// the end (phase=end), each mirror's output (its snapshot, then each
// change) replayed over an empty map must equal the state the test sent,
// and so must a fresh snapshot (state get) taken on another host. It
// logs a STATE line of figures.
func TestFleetReplicatedState(t *testing.T) {
	f := fleet.New(t, stateHosts)
	rec := newRecord()
	svc := serviceName("fleetstate")
	began := time.Now()
	want := map[string]string{}
	server := rec.start(t, f, 0, "server", "state", "serve", "--bind", "tcp://*:5560", "--discover", svc,
		"--iface", "eth0", "--name", "server", "--verbose")
	send := func(line string) {
		t.Helper()
		if err := server.Send(line); err != nil {
			t.Fatalf("server: %v\n%s", err, stderrs(server))
		}
		k, v, _ := strings.Cut(line, "=")
		if v == "" {
			delete(want, k)
		} else {
			want[k] = v
		}
	}
	send("phase=start")

	// A mirror on every host.
	mirror := func(i int) *proc {
		name, args := mirrorArgs(svc, i)
		return rec.start(t, f, i, name, args...)
	}
	mirrors := rec.startEach(t, f, 0, stateHosts, func(i int) (string, []string) {
		return mirrorArgs(svc, i)
	})
	var lastStart time.Time
	var synced durations
	var allSynced time.Time
	for _, m := range mirrors {
		lastStart = maxTime(lastStart, m.started)
	}
	for _, m := range mirrors {
		l := rec.awaitLine(t, stateDeadline, m, "its snapshot", func(s string) bool { return s == "phase=start" })
		synced = append(synced, l.at.Sub(m.started))
		allSynced = maxTime(allSynced, l.at)
	}

	// The stream, paced by a reference mirror's seeing each batch's end.
	streamStart := time.Now()
	rng := rand.New(rand.NewPCG(1, 21))
	ref, victimHost := mirrors[1], 7
	var restarted *proc
	caughtUp := make(chan time.Duration, 1)
	n, batches, after := 0, 0, 0
	for ; batches < stateMax && (restarted == nil || after < stateAfter); batches++ {
		for range stateBatch {
			n++
			k := fmt.Sprintf("k%03d", rng.IntN(stateKeys))
			if rng.IntN(5) == 0 {
				send(k + "=")
			} else {
				send(k + "=v" + strconv.Itoa(n))
			}
		}
		marker := "batch=" + strconv.Itoa(batches)
		send(marker)
		rec.awaitLine(t, stateDeadline, ref, "batch "+strconv.Itoa(batches), func(s string) bool { return s == marker })
		switch {
		case batches == stateKillAt:
			mirrors[victimHost].Kill()
		case batches == stateStartAt:
			restarted = mirror(victimHost)
			mirrors[victimHost] = restarted
			// Caught up: it has printed a batch marker at least as
			// recent as this one (from its snapshot or a change after it).
			go func(p *proc, since int) {
				l, err := rec.findLine(stateDeadline, p, func(s string) bool {
					b, ok := strings.CutPrefix(s, "batch=")
					v, err := strconv.Atoi(b)
					return ok && err == nil && v >= since
				})
				if err != nil {
					caughtUp <- -1
					return
				}
				caughtUp <- l.at.Sub(p.started)
			}(restarted, batches)
		case restarted != nil && len(of(rec.snapshot(), restarted)) > 0:
			after++
		}
	}
	if after < stateAfter {
		t.Fatalf("the restarted mirror printed nothing within %d batches\n%s", batches, stderrs(restarted))
	}
	endSent := time.Now()
	send("phase=end")
	var endSeen time.Time
	for _, m := range mirrors {
		l := rec.awaitLine(t, stateDeadline, m, "the end of the stream", func(s string) bool { return s == "phase=end" })
		endSeen = maxTime(endSeen, l.at)
	}

	rss := usage(t, mirrors...)

	// Every mirror's state, replayed from its output, is the server's.
	for _, m := range mirrors {
		got := map[string]string{}
		for _, l := range of(rec.snapshot(), m) {
			k, v, ok := strings.Cut(l.text, "=")
			if !ok {
				t.Fatalf("%s printed %q", m.name, l.text)
			}
			if v == "" {
				delete(got, k)
			} else {
				got[k] = v
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s ended with a state of %d keys, not the server's %d: %s", m.name, len(got), len(want), diff(got, want))
		}
	}
	// And a fresh snapshot from the server, on the last host.
	get := rec.start(t, f, stateHosts-1, "get", "state", "get", "--discover", svc, "--iface", "eth0", "--timeout", "30s")
	select {
	case <-get.exited:
	case <-time.After(stateDeadline):
		t.Fatalf("state get did not end within %v\n%s", stateDeadline, stderrs(get))
	}
	var snap []string
	for _, l := range of(rec.snapshot(), get) {
		snap = append(snap, l.text)
	}
	var wantLines []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		wantLines = append(wantLines, k+"="+want[k])
	}
	if !slices.Equal(snap, wantLines) {
		t.Fatalf("state get printed %d lines, want the %d keys sent:\n got %q\nwant %q\n%s", len(snap), len(wantLines), snap, wantLines, stderrs(get))
	}
	up := <-caughtUp // it has printed phase=end: it caught up before
	if up < 0 {
		t.Fatal("the restarted mirror never printed a recent batch marker")
	}
	t.Logf("STATE %d hosts: a server and %d mirrors | converge: every mirror synced %v after the last start (each from its start: %v) | %d changes in %d batches in %v, %d keys at the end | restarted mirror caught up %v after its start | last change seen by every mirror %v after it was sent | RSS per mirror %s | run %v",
		f.Size(), len(mirrors), allSynced.Sub(lastStart).Round(time.Millisecond), synced, n+batches+2, batches, endSent.Sub(streamStart).Round(time.Millisecond), len(want),
		up.Round(time.Millisecond), endSeen.Sub(endSent).Round(time.Millisecond), rss, time.Since(began).Round(time.Second))
}

// mirrorArgs returns the name and arguments of host i's mirror.
func mirrorArgs(svc string, i int) (string, []string) {
	name := fmt.Sprintf("mirror%02d", i)
	return name, []string{"state", "get", "--watch", "--discover", svc, "--iface", "eth0", "--timeout", "60s", "--name", name}
}

// diff describes the first few differences between two states.
func diff(got, want map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			out = append(out, fmt.Sprintf("%s=%q (want %q)", k, got[k], want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s=%q (want none)", k, got[k]))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], "...")
	}
	return strings.Join(out, ", ")
}
