package benchcore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// smokeConfig runs every scenario briefly: it checks that the harness and
// the stack move messages, not how fast.
func smokeConfig() Config {
	return Config{Runs: 1, Duration: 50 * time.Millisecond, MaxMsgs: 2000, MaxBytes: 16 << 20, Rate: 20000, Drain: 2 * time.Second, Idle: 300 * time.Millisecond, Setup: 5 * time.Second}
}

func TestScenariosSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rs, err := Run(ctx, smokeConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(Scenarios()) * len(ZpeerStacks()); len(rs) != want {
		t.Fatalf("%d results, want %d", len(rs), want)
	}
	for _, r := range rs {
		t.Run(r.Scenario+"/"+r.Stack, func(t *testing.T) {
			if r.NA {
				t.Skipf("%s cannot do %s", r.Stack, r.Scenario)
			}
			if r.Runs == 0 {
				t.Fatalf("%s: no measurement: %s", r.Scenario, r.Err)
			}
			if r.Delivered == 0 || r.Sent == 0 {
				t.Fatalf("%s: delivered %d of %d", r.Scenario, r.Delivered, r.Sent)
			}
			if r.Err != "" {
				t.Errorf("%s: %s", r.Scenario, r.Err)
			}
		})
	}
	md := Markdown(rs)
	if !strings.Contains(md, "pushpull/64B") {
		t.Errorf("markdown lacks rows:\n%s", md)
	}
	if _, err := json.Marshal(NewReport(smokeConfig(), time.Now(), rs)); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + md)
}

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter []string
		want   bool
	}{
		{"pushpull/64B", nil, true},
		{"pushpull/64B", []string{"pushpull"}, true},
		{"pushpull/64B", []string{"pushpull/64B"}, true},
		{"pushpull/64KiB", []string{"pushpull/64"}, false},
		{"reqrep/64B", []string{"pushpull", "reqrep/64B"}, true},
		{"pubsub/8subs", []string{"all"}, true},
	} {
		if got := Selected(tc.name, tc.filter); got != tc.want {
			t.Errorf("Selected(%q, %q) = %v, want %v", tc.name, tc.filter, got, tc.want)
		}
	}
}

func TestAggregateAndRatios(t *testing.T) {
	sc := Scenario{Name: "pushpull/64B", Kind: Throughput, Size: 64, Peers: 1}
	mk := func(n uint64, d time.Duration, lat time.Duration) Sample {
		h := NewHistogram()
		record(h, lat)
		return Sample{Sent: n, Delivered: n, Elapsed: d, Bytes: n * 64, Latency: h}
	}
	z := aggregate(sc, "zpeer", []Sample{mk(100, time.Second, time.Millisecond), mk(300, time.Second, time.Millisecond), mk(200, time.Second, time.Millisecond)}, nil)
	if z.MsgsPerSec != 200 || z.MsgsPerSecMin != 100 || z.MsgsPerSecMax != 300 {
		t.Fatalf("median/spread: %+v", z)
	}
	if z.Reliability != 1 || z.BytesPerSec != 200*64 {
		t.Fatalf("reliability/bytes: %+v", z)
	}
	if z.Product < 0.19 || z.Product > 0.21 {
		t.Fatalf("product %v, want 0.2", z.Product)
	}
	lib := aggregate(sc, RefLibzmq, []Sample{mk(100, time.Second, time.Millisecond)}, nil)
	rs := []Result{z, lib}
	AddRatios(rs)
	if rs[0].VsLibzmq != 2 || rs[1].VsLibzmq != 1 || rs[0].VsTCP != 0 {
		t.Fatalf("ratios: %v %v %v", rs[0].VsLibzmq, rs[1].VsLibzmq, rs[0].VsTCP)
	}
	if md := Markdown(rs); !strings.Contains(md, "2.00×") || !strings.Contains(md, "vs libzmq") || strings.Contains(md, "vs tcp") {
		t.Fatalf("markdown:\n%s", md)
	}
}
