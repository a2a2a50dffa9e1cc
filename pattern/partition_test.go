package pattern

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// kjob is a job of a partitioned pipeline: the Seq-th job of Key.
type kjob struct {
	Key string
	Seq int
}

func kjobKey(j kjob) string { return j.Key }

// keyLog records the jobs the handlers finished, in the order they
// finished, overall and per puller.
type keyLog struct {
	mu   sync.Mutex
	all  []kjob
	by   map[string][]kjob // puller name -> jobs done, in the order done
	n    int
	seen map[kjob]bool
}

func newKeyLog() *keyLog { return &keyLog{by: map[string][]kjob{}, seen: map[kjob]bool{}} }

func (l *keyLog) add(who string, j kjob) {
	l.mu.Lock()
	l.all = append(l.all, j)
	l.by[who] = append(l.by[who], j)
	if !l.seen[j] {
		l.seen[j] = true
		l.n++
	}
	l.mu.Unlock()
}

// distinct is how many different jobs were done.
func (l *keyLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// owners returns, for each key, the pullers that did its jobs, in the
// order of their first job of it... as a set sorted by name.
func (l *keyLog) owners() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]string{}
	for who, jobs := range l.by {
		for _, j := range jobs {
			if !slices.Contains(out[j.Key], who) {
				out[j.Key] = append(out[j.Key], who)
			}
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// checkOrder fails unless each key's jobs finished in push order, over
// all pullers and on each (a repeat of the job just done, a redelivery,
// is allowed).
func (l *keyLog) checkOrder(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	last := map[string]int{}
	for _, j := range l.all {
		if prev, ok := last[j.Key]; ok && j.Seq < prev {
			t.Fatalf("job %d of key %s finished after job %d", j.Seq, j.Key, prev)
		}
		last[j.Key] = j.Seq
	}
	for who, jobs := range l.by {
		last := map[string]int{}
		for _, j := range jobs {
			if prev, ok := last[j.Key]; ok && j.Seq < prev {
				t.Fatalf("puller %s did job %d of key %s after job %d", who, j.Seq, j.Key, prev)
			}
			last[j.Key] = j.Seq
		}
	}
}

// partitionRig is a Pusher of kjobs partitioned by key, and its pullers.
type partitionRig struct {
	t       *testing.T
	acked   bool
	push    *Pusher[kjob]
	log     *keyLog
	pullers map[string]*Puller[kjob]
}

func newPartitionRig(t *testing.T, acked bool, opts ...Option) *partitionRig {
	opts = append([]Option{WithBind(loopback), WithPartitionKey(kjobKey)}, opts...)
	if acked {
		opts = append(opts, WithAck())
	}
	push, err := NewPusher[kjob](opts...)
	push = cleanup(t, push, err)
	return &partitionRig{t: t, acked: acked, push: push, log: newKeyLog(), pullers: map[string]*Puller[kjob]{}}
}

// add starts a puller called name running h (nil: log the job), and
// waits until the pusher counts it among the owners of keys.
func (r *partitionRig) add(name string, h func(context.Context, kjob) error) *Puller[kjob] {
	r.t.Helper()
	if h == nil {
		h = func(_ context.Context, j kjob) error { r.log.add(name, j); return nil }
	}
	opts := []Option{WithConnect(ep(r.t, r.push)), WithName(name)}
	if r.acked {
		// Several workers and a large credit: the order of a key must
		// not depend on the puller processing one job at a time.
		opts = append(opts, WithAck(), WithCredit(64), WithWorkers(4))
	} else {
		// Fire-and-forget keeps the order of delivery; one worker keeps
		// it in processing.
		opts = append(opts, WithWorkers(1))
	}
	pl, err := NewPuller(h, opts...)
	pl = cleanup(r.t, pl, err)
	r.pullers[name] = pl
	r.waitPullers()
	return pl
}

// waitPullers waits until the pusher's ring is the set of live pullers.
func (r *partitionRig) waitPullers() {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%d pullers in the ring", len(r.pullers)), func() bool {
		var ids []string
		for _, ps := range r.push.Stats().Peers {
			ids = append(ids, ps.Identity)
		}
		slices.Sort(ids)
		var want []string
		for name := range r.pullers {
			want = append(want, name)
		}
		slices.Sort(want)
		return slices.Equal(ids, want)
	})
}

func (r *partitionRig) remove(name string) {
	r.t.Helper()
	r.pullers[name].Close()
	delete(r.pullers, name)
	r.waitPullers()
}

// pushRound pushes job seq of each of keys, and waits until every job
// pushed so far is done.
func (r *partitionRig) pushRound(keys []string, seq int, total int) {
	r.t.Helper()
	for _, k := range keys {
		if err := r.push.Push(ctxT(r.t), kjob{Key: k, Seq: seq}); err != nil {
			r.t.Fatal(err)
		}
	}
	waitFor(r.t, fmt.Sprintf("%d jobs done", total), func() bool { return r.log.distinct() == total })
}

func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("account-%d", i)
	}
	return keys
}

// Every job of a key goes to one puller, in push order, with four pullers;
// the keys spread over all of them.
func TestPartitionOrderAndSingleOwner(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprint("acked=", acked), func(t *testing.T) {
			r := newPartitionRig(t, acked)
			for i := range 4 {
				r.add(fmt.Sprint("worker-", i), nil)
			}
			const nkeys, perKey = 199, 20
			keys := keyNames(nkeys)
			// Interleaved: each key's jobs are spread through the stream.
			for seq := range perKey {
				for _, k := range keys {
					if err := r.push.Push(ctxT(t), kjob{Key: k, Seq: seq}); err != nil {
						t.Fatal(err)
					}
				}
			}
			waitFor(t, "every job done", func() bool { return r.log.distinct() == nkeys*perKey })
			r.log.checkOrder(t)
			perPuller := map[string]int{}
			for k, who := range r.log.owners() {
				if len(who) != 1 {
					t.Fatalf("key %s was done by %v", k, who)
				}
				perPuller[who[0]]++
			}
			// 199 keys over 4 pullers: 50 each on average, a standard
			// deviation of about 6; 25 is 4 deviations off.
			for name := range r.pullers {
				if n := perPuller[name]; n < 25 || n > 75 {
					t.Errorf("puller %s owns %d of %d keys (%v)", name, n, nkeys, perPuller)
				}
			}
			if acked {
				if err := r.push.Drain(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				if st := r.push.Stats(); st.Acked != nkeys*perKey || st.Pending != 0 {
					t.Fatalf("stats %+v", st)
				}
			}
		})
	}
}

// A PartitionKey call option overrides the Pusher's key function, and
// partitions a Pusher that has none.
func TestPartitionKeyCallOption(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprint("acked=", acked), func(t *testing.T) {
			opts := []Option{WithBind(loopback)}
			if acked {
				opts = append(opts, WithAck())
			}
			push, err := NewPusher[int](opts...)
			push = cleanup(t, push, err)
			var mu sync.Mutex
			got := map[string][]int{} // puller -> values
			for i := range 4 {
				name := fmt.Sprint("w", i)
				popts := []Option{WithConnect(ep(t, push)), WithName(name), WithWorkers(1)}
				if acked {
					popts = append(popts, WithAck())
				}
				pl, err := NewPuller(func(_ context.Context, v int) error {
					mu.Lock()
					got[name] = append(got[name], v)
					mu.Unlock()
					return nil
				}, popts...)
				cleanup(t, pl, err)
			}
			waitFor(t, "4 pullers", func() bool { return len(push.Stats().Peers) == 4 })
			const n = 100
			for i := range n {
				if err := push.Push(ctxT(t), i, PartitionKey("one key"), Header("i", fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "all done", func() bool {
				mu.Lock()
				defer mu.Unlock()
				c := 0
				for _, vs := range got {
					c += len(vs)
				}
				return c == n
			})
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("one key went to %d pullers", len(got))
			}
			for _, vs := range got {
				for i, v := range vs {
					if v != i {
						t.Fatalf("order %v", vs)
					}
				}
			}
		})
	}
}

// When a puller leaves, only its keys move; a puller that joins takes
// about 1/N of the keys, and only from the others.
func TestPartitionMembershipMovesFewKeys(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(fmt.Sprint("acked=", acked), func(t *testing.T) {
			r := newPartitionRig(t, acked)
			for i := range 5 {
				r.add(fmt.Sprint("worker-", i), nil)
			}
			const nkeys = 400
			keys := keyNames(nkeys)
			r.pushRound(keys, 0, nkeys)
			before := r.owners(keys)

			// Leave: worker-2's keys go to the others, no other key moves.
			r.remove("worker-2")
			r.pushRound(keys, 1, 2*nkeys)
			afterLeave := r.owners(keys)
			moved := 0
			for _, k := range keys {
				switch {
				case before[k] == "worker-2":
					moved++
					if afterLeave[k] == "worker-2" {
						t.Fatalf("key %s still went to the puller that left", k)
					}
				case afterLeave[k] != before[k]:
					t.Fatalf("key %s moved from %s to %s when worker-2 left", k, before[k], afterLeave[k])
				}
			}
			if moved == 0 {
				t.Fatal("worker-2 owned no key")
			}

			// Join: the newcomer takes keys from the others, about 1/5.
			r.add("worker-new", nil)
			r.pushRound(keys, 2, 3*nkeys)
			afterJoin := r.owners(keys)
			taken := 0
			for _, k := range keys {
				if afterJoin[k] != afterLeave[k] {
					if afterJoin[k] != "worker-new" {
						t.Fatalf("key %s moved from %s to %s, not to the newcomer", k, afterLeave[k], afterJoin[k])
					}
					taken++
				}
			}
			// 400 keys, p = 1/5: mean 80, deviation 8; 40..120 is 5 off.
			if taken < 40 || taken > 120 {
				t.Fatalf("the newcomer took %d of %d keys, want about %d", taken, nkeys, nkeys/5)
			}
			r.log.checkOrder(t)
		})
	}
}

// owners returns the puller that did the latest round's job of each key.
func (r *partitionRig) owners(keys []string) map[string]string {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	latest := map[string]kjob{}
	out := map[string]string{}
	for who, jobs := range r.log.by {
		for _, j := range jobs {
			if l, ok := latest[j.Key]; !ok || j.Seq >= l.Seq {
				latest[j.Key] = j
				out[j.Key] = who
			}
		}
	}
	return out
}

// Acked: a puller that dies holding jobs (its handlers stuck, its
// connection closed) loses nothing, and no key is reordered: its keys'
// next jobs waited at the pusher, and go to the keys' new owners after
// the jobs it held are redelivered and done.
func TestPartitionAckedPullerLostKeepsOrder(t *testing.T) {
	r := newPartitionRig(t, true, WithAckTimeout(time.Minute))
	for i := range 4 {
		r.add(fmt.Sprint("worker-", i), nil)
	}
	// The victim does its first 20 jobs, then holds every job it gets.
	var done atomic.Int64
	held := make(chan struct{}, 1000)
	victim := r.add("victim", func(ctx context.Context, j kjob) error {
		if done.Add(1) > 20 {
			held <- struct{}{}
			<-ctx.Done() // never finishes: lost with the puller
			return ctx.Err()
		}
		r.log.add("victim", j)
		return nil
	})
	const nkeys, perKey = 100, 30
	keys := keyNames(nkeys)
	for seq := range perKey {
		for _, k := range keys {
			if err := r.push.Push(ctxT(t), kjob{Key: k, Seq: seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-held // the victim holds at least one job
	victimKeys := r.push.Stats().Peers
	vk := 0
	for _, ps := range victimKeys {
		if ps.Identity == "victim" {
			vk = ps.Keys
		}
	}
	if vk == 0 {
		t.Fatalf("the victim has no keys in its stats: %+v", victimKeys)
	}
	victim.Close()
	delete(r.pullers, "victim")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.push.Drain(ctx); err != nil {
		t.Fatalf("drain: %v (stats %+v)", err, r.push.Stats())
	}
	if n := r.log.distinct(); n != nkeys*perKey {
		t.Fatalf("%d of %d jobs done", n, nkeys*perKey)
	}
	r.log.checkOrder(t)
	// Across pullers too: every job of a key that the victim did comes
	// before every later job of it done elsewhere.
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	lastAtVictim := map[string]int{}
	for _, j := range r.log.by["victim"] {
		lastAtVictim[j.Key] = j.Seq
	}
	movedKeys := 0
	for who, jobs := range r.log.by {
		if who == "victim" {
			continue
		}
		firstElsewhere := map[string]int{}
		for _, j := range jobs {
			if _, ok := firstElsewhere[j.Key]; !ok {
				firstElsewhere[j.Key] = j.Seq
			}
		}
		for k, first := range firstElsewhere {
			if last, ok := lastAtVictim[k]; ok {
				movedKeys++
				// first == last is the victim's last job done again (its
				// ack went down with it): at least once allows that, an
				// earlier job after a later one would be reordering.
				if first < last {
					t.Fatalf("key %s: job %d done by %s, job %d before it by the victim", k, first, who, last)
				}
			}
		}
	}
	if movedKeys == 0 {
		t.Fatal("no key moved from the victim")
	}
	if st := r.push.Stats(); st.Dead != 0 || st.Acked != nkeys*perKey {
		t.Fatalf("stats %+v", st)
	}
}

// A puller that is already held up (no credit left) holds up only its own
// keys: the others keep flowing.
func TestPartitionAckedBusyOwnerHoldsOnlyItsKeys(t *testing.T) {
	r := newPartitionRig(t, true)
	release := make(chan struct{})
	slowName := "slow"
	for i := range 3 {
		r.add(fmt.Sprint("worker-", i), nil)
	}
	r.add(slowName, func(ctx context.Context, j kjob) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.log.add(slowName, j)
		return nil
	})
	const nkeys, perKey = 100, 10
	keys := keyNames(nkeys)
	for seq := range perKey {
		for _, k := range keys {
			if err := r.push.Push(ctxT(t), kjob{Key: k, Seq: seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every key not owned by the slow puller gets all its jobs done
	// while the slow one holds its own.
	var slowKeys int
	waitFor(t, "the other keys' jobs", func() bool {
		for _, ps := range r.push.Stats().Peers {
			if ps.Identity == slowName {
				slowKeys = ps.Keys
			}
		}
		return slowKeys > 0 && r.log.distinct() == (nkeys-slowKeys)*perKey
	})
	close(release)
	if err := r.push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := r.log.distinct(); n != nkeys*perKey {
		t.Fatalf("%d of %d jobs done", n, nkeys*perKey)
	}
	r.log.checkOrder(t)
}

// WithPartitionKey's function must take the Pusher's type.
func TestPartitionKeyFuncType(t *testing.T) {
	_, err := NewPusher[int](WithBind(loopback), WithPartitionKey(func(s string) string { return s }))
	if err == nil {
		t.Fatal("a func(string) string key function was accepted by a Pusher[int]")
	}
	if _, err := NewPuller(func(context.Context, int) error { return nil }, WithPartitionKey(func(int) string { return "" })); err == nil {
		t.Fatal("WithPartitionKey accepted by a Puller")
	}
}

// Keyed jobs left in an outbox keep their keys: the next Pusher on the
// directory (here with no key function of its own) delivers each key's
// jobs to one puller, in order.
func TestPartitionOutboxKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	first, err := NewPusher[kjob](WithAck(), WithOutbox(dir, OutboxSync), WithPartitionKey(kjobKey))
	if err != nil {
		t.Fatal(err)
	}
	const nkeys, perKey = 21, 10
	keys := keyNames(nkeys)
	for seq := range perKey {
		for _, k := range keys {
			if err := first.Push(ctxT(t), kjob{Key: k, Seq: seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	push, err := NewPusher[kjob](WithBind(loopback), WithAck(), WithOutbox(dir, OutboxSync))
	push = cleanup(t, push, err)
	if push.ack.recovered != nkeys*perKey {
		t.Fatalf("recovered %d jobs, want %d", push.ack.recovered, nkeys*perKey)
	}
	r := &partitionRig{t: t, acked: true, push: push, log: newKeyLog(), pullers: map[string]*Puller[kjob]{}}
	for i := range 4 {
		r.add(fmt.Sprint("worker-", i), nil)
	}
	if err := push.Drain(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := r.log.distinct(); n != nkeys*perKey {
		t.Fatalf("%d of %d jobs done", n, nkeys*perKey)
	}
	// The first puller to say hello owns every key until the others
	// come, so keys move, but each only between two of its jobs.
	r.log.checkOrder(t)
	seen := map[string]int{}
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	for _, jobs := range r.log.by {
		for _, j := range jobs {
			seen[j.Key]++
		}
	}
	for _, k := range keys {
		if seen[k] != perKey {
			t.Fatalf("key %s: %d jobs done, want %d", k, seen[k], perKey)
		}
	}
}
