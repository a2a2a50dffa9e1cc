package pattern

import (
	"sync/atomic"
	"time"
)

// pattern's one clock. Every time the package reads comes from here: now
// and nowNano for wall times (envelope timestamps, latencies measured
// across processes), mono for intervals inside the process (ack
// deadlines, breakers). Other packages read time.Now: none has a clock
// cost on its hot path worth sharing one (an internal package would be
// the place if one did).

// monoBase anchors mono.
var monoBase = time.Now()

// mono is a monotonic clock reading in nanoseconds.
func mono() int64 { return int64(time.Since(monoBase)) }

// clockBase is a recent time.Now, with its monotonic reading.
var clockBase atomic.Pointer[time.Time]

func init() {
	t := time.Now()
	clockBase.Store(&t)
}

// nowNano is now().UnixNano() without making a time.Time.
func nowNano() int64 {
	b := clockBase.Load()
	if d := time.Since(*b); d < time.Second {
		return b.UnixNano() + int64(d)
	}
	return now().UnixNano()
}

// now is time.Now for envelope timestamps and latencies at half the cost
// on machines whose wall clock is slow to read: the wall time is a recent
// time.Now plus the monotonic time elapsed since, re-based every second so
// that a wall-clock step shows within a second.
func now() time.Time {
	b := clockBase.Load()
	d := time.Since(*b)
	if d < time.Second {
		return b.Add(d)
	}
	t := time.Now()
	clockBase.Store(&t)
	return t
}
