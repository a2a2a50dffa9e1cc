package demo

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Text renders the summary for a terminal: one row per pattern with the
// four figures, then the notes.
func (s *Summary) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "zpeer demo: %d peers in one process on the loopback interface, found each other over mDNS (slowest pattern: %s) and talk over CURVE with keys made at start; %s in all\n\n",
		s.Peers, s.Discovery.Round(time.Millisecond), s.Elapsed.Round(100*time.Millisecond))
	rows := [][]string{{"pattern", "peers", "msgs/s", "p50", "p90", "p99", "delivered/sent", "reliability", "thr x lat"}}
	for _, f := range s.Patterns {
		rows = append(rows, []string{f.Pattern, f.Peers, rate(f.MsgsPerSec), dur(f.P50), dur(f.P90), dur(f.P99),
			fmt.Sprintf("%d/%d", f.Delivered, f.Sent), fmt.Sprintf("%.4f", f.Reliability), fmt.Sprintf("%.2f", f.Product)})
	}
	writeTable(&b, rows, 2)
	b.WriteString("\n")
	for _, f := range s.Patterns {
		for _, n := range f.Notes {
			fmt.Fprintf(&b, "- %s: %s\n", f.Pattern, n)
		}
	}
	b.WriteString("\nmsgs/s: replies, deliveries (summed over subscribers) or jobs processed per second. Latency: ")
	var ls []string
	for _, f := range s.Patterns {
		ls = append(ls, f.Pattern+" "+f.Latency)
	}
	b.WriteString(strings.Join(ls, ", "))
	b.WriteString(". thr x lat: msgs/s x p50 in seconds, the messages in flight (Little's law).\n")
	return b.String()
}

// writeTable writes rows in columns, the first left nCols-aligned and the
// rest right-aligned.
func writeTable(b *strings.Builder, rows [][]string, left int) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteString("\n")
	}
}

func rate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
