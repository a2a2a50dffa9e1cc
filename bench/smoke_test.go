package bench

import (
	"context"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// TestScenariosSmoke runs every scenario on every stack once, briefly, so
// that the comparison cannot rot. It asserts only that messages were
// delivered, never how fast: CI machines are noisy.
func TestScenariosSmoke(t *testing.T) {
	cfg := benchcore.Config{
		Runs: 1, Duration: 40 * time.Millisecond, MaxMsgs: 2000, MaxBytes: 16 << 20, Rate: 20000,
		Drain: 2 * time.Second, Idle: 300 * time.Millisecond, Setup: 5 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	start := time.Now()
	rs, err := benchcore.RunStacks(ctx, cfg, Stacks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d measurements in %v\n%s", len(rs), time.Since(start).Round(time.Millisecond), benchcore.Markdown(rs))
	for _, r := range rs {
		t.Run(r.Scenario+"/"+r.Stack, func(t *testing.T) {
			if r.NA {
				t.Skipf("%s cannot do %s", r.Stack, r.Scenario)
			}
			if r.Runs == 0 {
				t.Fatalf("no measurement: %s", r.Err)
			}
			if r.Delivered == 0 {
				t.Fatalf("nothing delivered of %d sent (%s)", r.Sent, r.Detail)
			}
		})
	}
}
