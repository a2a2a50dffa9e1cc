package benchcore

import (
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Reference stacks: every row carries its primary figure's ratio to them
// when they are in the same run.
const (
	RefLibzmq = "libzmq"
	RefTCP    = "tcp"
)

// Result is one scenario on one stack, aggregated over the runs: medians,
// with the spread of the main figures.
type Result struct {
	Scenario string `json:"scenario"`
	Stack    string `json:"stack"`
	Kind     Kind   `json:"kind"`
	Size     int    `json:"size_bytes"`
	Peers    int    `json:"peers"`
	// NA: the stack cannot do this scenario.
	NA bool `json:"na,omitempty"`
	// Err is the first error of a failed run; Failed counts them.
	Err    string `json:"error,omitempty"`
	Failed int    `json:"failed_runs,omitempty"`
	Runs   int    `json:"runs"`

	MsgsPerSec    float64 `json:"msgs_per_sec"` // RoundTrip: round trips/s; FanOut: deliveries/s
	MsgsPerSecMin float64 `json:"msgs_per_sec_min"`
	MsgsPerSecMax float64 `json:"msgs_per_sec_max"`
	BytesPerSec   float64 `json:"bytes_per_sec"`

	// Latency percentiles in nanoseconds: one-way for Throughput, FanOut and
	// Fault, round trip for RoundTrip; 0 when not measured.
	P50    float64 `json:"p50_ns"`
	P90    float64 `json:"p90_ns"`
	P99    float64 `json:"p99_ns"`
	P999   float64 `json:"p999_ns"`
	P50Min float64 `json:"p50_ns_min"`
	P50Max float64 `json:"p50_ns_max"`

	Sent        uint64  `json:"sent"`        // summed over runs
	Delivered   uint64  `json:"delivered"`   // summed over runs
	Reliability float64 `json:"reliability"` // median of delivered / sent (FanOut: / sent x subscribers)
	// Product is msgs/s x p50 latency in seconds: by Little's law, the
	// messages in flight it takes to reach that throughput at that
	// latency. 1 for a strict request/reply; lower is better at equal
	// throughput.
	Product float64 `json:"product"`

	// Ratios of the primary figure (msgs/s for Throughput and FanOut, p50
	// for RoundTrip, delivered/sent for Fault) to the reference stacks in
	// the same run; 0 when there is no reference.
	VsLibzmq float64 `json:"vs_libzmq,omitempty"`
	VsTCP    float64 `json:"vs_tcp,omitempty"`

	Detail string `json:"detail,omitempty"`
}

// Primary is the result's main figure for its kind.
func (r Result) Primary() float64 {
	switch r.Kind {
	case RoundTrip:
		return r.P50
	case Fault:
		return r.Reliability
	}
	return r.MsgsPerSec
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func aggregate(sc Scenario, stack string, samples []Sample, errs []error) Result {
	r := Result{Scenario: sc.Name, Stack: stack, Kind: sc.Kind, Size: sc.Size, Peers: sc.Peers, Runs: len(samples), Failed: len(errs)}
	if len(errs) > 0 {
		r.Err = errs[0].Error()
	}
	var mps, bps, p50, p90, p99, p999, rel, prod []float64
	var details []string
	for _, s := range samples {
		r.Sent += s.Sent
		r.Delivered += s.Delivered
		sec := s.Elapsed.Seconds()
		var m float64
		if sec > 0 {
			m = float64(s.Delivered) / sec
			bps = append(bps, float64(s.Bytes)/sec)
		}
		mps = append(mps, m)
		expected := s.Sent
		if sc.Kind == FanOut {
			expected *= uint64(sc.Peers)
		}
		if expected > 0 {
			rel = append(rel, float64(s.Delivered)/float64(expected))
		}
		if s.Latency != nil && s.Latency.TotalCount() > 0 {
			v := s.Latency.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
			p50 = append(p50, float64(v[50]))
			p90 = append(p90, float64(v[90]))
			p99 = append(p99, float64(v[99]))
			p999 = append(p999, float64(v[99.9]))
			prod = append(prod, m*float64(v[50])/1e9)
		}
		if s.Detail != "" {
			details = append(details, s.Detail)
		}
	}
	r.MsgsPerSec, r.BytesPerSec = median(mps), median(bps)
	if len(mps) > 0 {
		r.MsgsPerSecMin, r.MsgsPerSecMax = slices.Min(mps), slices.Max(mps)
	}
	r.P50, r.P90, r.P99, r.P999 = median(p50), median(p90), median(p99), median(p999)
	if len(p50) > 0 {
		r.P50Min, r.P50Max = slices.Min(p50), slices.Max(p50)
	}
	r.Reliability, r.Product = median(rel), median(prod)
	if len(details) > 0 {
		// The median run's detail speaks for the set.
		r.Detail = details[len(details)/2]
	}
	return r
}

// AddRatios fills VsLibzmq and VsTCP from the reference rows of the same
// scenario.
func AddRatios(rs []Result) {
	ref := map[string]float64{}
	for _, r := range rs {
		if (r.Stack == RefLibzmq || r.Stack == RefTCP) && !r.NA && r.Runs > 0 {
			ref[r.Scenario+"\x00"+r.Stack] = r.Primary()
		}
	}
	for i := range rs {
		r := &rs[i]
		if r.NA || r.Runs == 0 {
			continue
		}
		if v := ref[r.Scenario+"\x00"+RefLibzmq]; v > 0 {
			r.VsLibzmq = r.Primary() / v
		}
		if v := ref[r.Scenario+"\x00"+RefTCP]; v > 0 {
			r.VsTCP = r.Primary() / v
		}
	}
}

// Report is the JSON document of a run.
type Report struct {
	Started  time.Time `json:"started"`
	GoOS     string    `json:"goos"`
	GoArch   string    `json:"goarch"`
	CPUs     int       `json:"cpus"`
	Go       string    `json:"go"`
	Runs     int       `json:"runs"`
	Duration string    `json:"duration"`
	MaxMsgs  int       `json:"max_msgs"`
	Rate     int       `json:"fault_rate"`
	Results  []Result  `json:"results"`
}

// NewReport wraps results with the configuration and the machine.
func NewReport(cfg Config, started time.Time, rs []Result) Report {
	cfg = cfg.withDefaults()
	return Report{
		Started: started, GoOS: runtime.GOOS, GoArch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Runs: cfg.Runs, Duration: cfg.Duration.String(), MaxMsgs: cfg.MaxMsgs, Rate: cfg.Rate, Results: rs,
	}
}

// JSON renders the report, indented.
func (r Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Markdown renders results as a markdown table, one row per scenario and
// stack, followed by the notes of the rows that have any. Ratio columns
// appear when a reference stack took part.
func Markdown(rs []Result) string {
	var hasLib, hasTCP bool
	for _, r := range rs {
		hasLib = hasLib || r.Stack == RefLibzmq
		hasTCP = hasTCP || r.Stack == RefTCP
	}
	var b strings.Builder
	b.WriteString("| scenario | stack | msgs/s median (min–max) | MB/s | p50 | p90 | p99 | p99.9 | delivered/sent | thr×lat |")
	sep := "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
	if hasLib {
		b.WriteString(" vs libzmq |")
		sep += "--:|"
	}
	if hasTCP {
		b.WriteString(" vs tcp |")
		sep += "--:|"
	}
	b.WriteString("\n" + sep + "\n")
	var notes []string
	for _, r := range rs {
		cells := []string{r.Scenario, r.Stack}
		switch {
		case r.NA:
			cells = append(cells, "n/a", "", "", "", "", "", "", "")
		case r.Runs == 0:
			cells = append(cells, "failed", "", "", "", "", "", "", "")
		default:
			cells = append(cells,
				fmt.Sprintf("%s (%s–%s)", si(r.MsgsPerSec), si(r.MsgsPerSecMin), si(r.MsgsPerSecMax)),
				fmt.Sprintf("%.1f", r.BytesPerSec/1e6),
				dur(r.P50), dur(r.P90), dur(r.P99), dur(r.P999),
				fmt.Sprintf("%.4f", r.Reliability),
				product(r))
		}
		if hasLib {
			cells = append(cells, ratio(r.VsLibzmq))
		}
		if hasTCP {
			cells = append(cells, ratio(r.VsTCP))
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		note := r.Detail
		if r.Err != "" {
			note = JoinDetail(note, fmt.Sprintf("%d failed run(s): %s", r.Failed, r.Err))
		}
		if note != "" && !r.NA {
			notes = append(notes, fmt.Sprintf("- %s, %s: %s", r.Scenario, r.Stack, note))
		}
	}
	b.WriteString("\nmsgs/s: delivered messages per second (round trips/s for reqrep, deliveries/s summed over subscribers for pubsub). " +
		"Latency: one way (sampled), round trip for reqrep. thr×lat: msgs/s × p50 in seconds, the messages in flight. " +
		"Ratios compare the primary figure of the scenario: msgs/s for pushpull and pubsub (higher is better), p50 for reqrep (lower is better), delivered/sent for faults.\n")
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

func si(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func dur(ns float64) string {
	if ns <= 0 {
		return "–"
	}
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1fµs", float64(d)/1e3)
}

func product(r Result) string {
	if r.Product <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.3g", r.Product)
}

func ratio(v float64) string {
	if v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

// Machine describes where the numbers come from: CPUs, OS and Go.
func Machine() string {
	return fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
