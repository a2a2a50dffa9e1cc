package benchcore

import (
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config bounds and selects the measurements. The zero value of a field
// means its default.
type Config struct {
	Runs      int           // repetitions of every measurement (default 5); medians are reported
	Duration  time.Duration // sending time of one measurement (default 1s)
	MaxMsgs   int           // messages sent in one measurement at most (default 10,000,000)
	MaxBytes  int64         // payload bytes sent in one measurement at most (default 4 GiB)
	Rate      int           // messages/s of the paced fault scenarios (default 50,000)
	Scenarios []string      // scenario names or name prefixes ("pushpull", "reqrep/64B"); empty runs all
	// Drain is how long receivers may take, once sending stopped, to take
	// what is still in flight (default 2s + Duration). A measurement also
	// ends when no message arrived for Idle (default 500ms).
	Drain, Idle time.Duration
	// Setup bounds connecting and the warm-up (default 10s).
	Setup time.Duration
}

// Defaults of Config.
const (
	DefaultRuns     = 5
	DefaultDuration = time.Second
	DefaultMaxMsgs  = 10_000_000
	DefaultMaxBytes = 4 << 30
	DefaultRate     = 50_000
)

func (c Config) withDefaults() Config {
	if c.Runs <= 0 {
		c.Runs = DefaultRuns
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.MaxMsgs <= 0 {
		c.MaxMsgs = DefaultMaxMsgs
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Drain <= 0 {
		c.Drain = 2*time.Second + c.Duration
	}
	if c.Idle <= 0 {
		c.Idle = 500 * time.Millisecond
	}
	if c.Setup <= 0 {
		c.Setup = 10 * time.Second
	}
	return c
}

// Kind is what a scenario measures, and so which figure its ratios compare.
type Kind string

// The kinds of scenario.
const (
	Throughput Kind = "throughput" // one sender, one receiver, as fast as possible: msgs/s
	RoundTrip  Kind = "roundtrip"  // request/reply, one in flight: latency p50
	FanOut     Kind = "fanout"     // one publisher, n subscribers: deliveries/s
	Fault      Kind = "fault"      // paced stream with a fault injected: delivered/sent
)

// Fault scenarios.
const (
	FaultPullerKilled = "puller-killed"
	FaultSlowSub      = "slow-subscriber"
)

// A Scenario is one measurement, run for every stack.
type Scenario struct {
	Name  string // "pushpull/64B"
	Kind  Kind
	Size  int    // message payload, bytes
	Peers int    // receivers
	Fault string // for Kind Fault
	Proxy bool   // for Kind FanOut: through a pub/sub proxy (ProxyStack)
	Desc  string
}

// Message sizes.
const (
	KiB = 1 << 10
	MiB = 1 << 20
)

// Scenarios is the standard set, in the order they are run and reported.
func Scenarios() []Scenario {
	var s []Scenario
	for _, n := range []int{64, KiB, 64 * KiB, MiB} {
		s = append(s, Scenario{Name: "pushpull/" + SizeName(n), Kind: Throughput, Size: n, Peers: 1,
			Desc: "PUSH->PULL, one sender and one receiver, as fast as the stack goes"})
	}
	for _, n := range []int{64, 4 * KiB} {
		s = append(s, Scenario{Name: "reqrep/" + SizeName(n), Kind: RoundTrip, Size: n, Peers: 1,
			Desc: "REQ->REP round trip, one request in flight"})
	}
	s = append(s,
		Scenario{Name: "pubsub/8subs", Kind: FanOut, Size: 64, Peers: 8,
			Desc: "PUB->8 SUBs, 64 B, publisher as fast as it goes; deliveries/s summed over subscribers"},
		Scenario{Name: "proxy/8subs", Kind: FanOut, Size: 64, Peers: 8, Proxy: true,
			Desc: "PUB->XSUB/XPUB proxy->8 SUBs, 64 B (zpeer's socket.Proxy, libzmq's zmq_proxy); deliveries/s summed over subscribers"},
		Scenario{Name: "fault/puller-killed", Kind: Fault, Fault: FaultPullerKilled, Size: 64, Peers: 2,
			Desc: "PUSH->2 PULLs at a paced rate; one puller closes half-way; unique delivered / sent"},
		// 1 KiB so that what the stalled subscriber misses outgrows the
		// kernel's socket buffers and reaches the stack's own queues.
		Scenario{Name: "fault/slow-subscriber", Kind: Fault, Fault: FaultSlowSub, Size: KiB, Peers: 2,
			Desc: "PUB->2 SUBs, 1 KiB at a paced rate; one stops reading for the middle half; the healthy subscriber's delivered / sent"},
	)
	return s
}

// SizeName formats a payload size: 64B, 1KiB, 64KiB, 1MiB.
func SizeName(n int) string {
	switch {
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%dMiB", n/MiB)
	case n >= KiB && n%KiB == 0:
		return fmt.Sprintf("%dKiB", n/KiB)
	}
	return fmt.Sprintf("%dB", n)
}

// Selected reports whether the scenario name matches the filter: empty
// selects all; otherwise any entry equal to the name, or a prefix of it
// ending at a '/' boundary.
func Selected(name string, filter []string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		f = strings.TrimSpace(strings.TrimSuffix(f, "/"))
		if f == "" || f == "all" || f == name || strings.HasPrefix(name, f+"/") {
			return true
		}
	}
	return false
}

// Params is what one measurement gets: the scenario and the bounds.
type Params struct {
	Scenario Scenario
	Duration time.Duration
	MaxMsgs  int // already lowered to what MaxBytes allows at the scenario's size
	Rate     int
	Drain    time.Duration
	Idle     time.Duration
	Setup    time.Duration
}

// A Sample is the outcome of one measurement.
type Sample struct {
	Sent      uint64        // messages the sender sent (round trips for RoundTrip)
	Delivered uint64        // messages received (FanOut: summed over subscribers; Fault: see the scenario)
	Elapsed   time.Duration // from the first measured send to the last receive
	Bytes     uint64        // payload bytes delivered
	Latency   *hdrhistogram.Histogram
	Detail    string
}

// NewHistogram returns the latency histogram the harness uses: nanoseconds
// from 100 ns to 100 s, 3 significant digits.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(100, int64(100*time.Second), 3)
}

func record(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < 100 {
		v = 100
	}
	if v > int64(100*time.Second) {
		v = int64(100 * time.Second)
	}
	h.RecordValue(v)
}
