package demo

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// latencies is a histogram safe for concurrent use.
type latencies struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLatencies() *latencies { return &latencies{h: benchcore.NewHistogram()} }

func (l *latencies) record(d time.Duration) {
	l.mu.Lock()
	l.h.RecordValue(max(int64(d), 1))
	l.mu.Unlock()
}

// fill sets the latency, throughput, reliability and product figures.
func (l *latencies) fill(f *Figures, elapsed time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.Elapsed = elapsed
	if elapsed > 0 {
		f.MsgsPerSec = float64(f.Delivered) / elapsed.Seconds()
	}
	if l.h.TotalCount() > 0 {
		f.P50 = time.Duration(l.h.ValueAtQuantile(50))
		f.P90 = time.Duration(l.h.ValueAtQuantile(90))
		f.P99 = time.Duration(l.h.ValueAtQuantile(99))
		f.Max = time.Duration(l.h.Max())
	}
	if f.Sent > 0 {
		f.Reliability = float64(f.Delivered) / float64(f.Sent)
	}
	f.Product = f.MsgsPerSec * f.P50.Seconds()
}
