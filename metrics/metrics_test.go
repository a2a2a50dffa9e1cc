package metrics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	ztest "github.com/zpeer/zpeer/internal/testutil"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const loopback = "tcp://127.0.0.1:0"

// family returns the metric of family name whose labels are want, or nil.
func find(t *testing.T, fams []*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func value(t *testing.T, fams []*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(t, fams, name, labels)
	if m == nil {
		t.Fatalf("no %s%v", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

func gather(t *testing.T, c *Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestExpositionMatchesStats runs an acked pipeline (with a durable
// outbox), a request/reply pair and a raw socket pair, then checks that the
// exposition lints clean and that its values are the sources' Stats.
func TestExpositionMatchesStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const jobs = 57

	c, err := NewCollector(WithPeerSeries(4))
	if err != nil {
		t.Fatal(err)
	}
	reg := gather(t, c)

	// Acked pipeline with an outbox, handler timing on.
	pusher, err := pattern.NewPusher[string](pattern.WithBind(loopback), pattern.WithAck(),
		pattern.WithOutbox(t.TempDir(), pattern.OutboxSync))
	if err != nil {
		t.Fatal(err)
	}
	defer pusher.Close()
	handled := make(chan struct{}, jobs)
	puller, err := pattern.NewPuller(func(context.Context, string) error {
		handled <- struct{}{}
		return nil
	}, pattern.WithAck(), pattern.WithConnect(pusher.Endpoints()[0]), pattern.WithHandlerTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer puller.Close()

	// Request/reply.
	replier, err := pattern.NewReplier(func(_ context.Context, s string) (string, error) { return s + "!", nil },
		pattern.WithBind(loopback), pattern.WithHandlerTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer replier.Close()
	requester, err := pattern.NewRequester[string, string](pattern.WithConnect(replier.Endpoints()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer requester.Close()

	// A raw socket pair.
	pull, err := socket.New(socket.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	ep, err := pull.Bind(loopback)
	if err != nil {
		t.Fatal(err)
	}
	push, err := socket.New(socket.PUSH)
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	if err := push.Connect(ep); err != nil {
		t.Fatal(err)
	}

	for _, add := range []error{
		c.AddPattern(RolePusher, "jobs", pusher), c.AddPattern(RolePuller, "jobs", puller),
		c.AddPattern(RoleReplier, "echo", replier), c.AddPattern(RoleRequester, "echo", requester),
		c.AddSocket("raw-pull", pull), c.AddSocket("raw-push", push), c.AddDiscoveryStack(),
	} {
		if add != nil {
			t.Fatal(add)
		}
	}

	for i := range jobs {
		if err := pusher.Push(ctx, fmt.Sprint("job ", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := requester.Request(ctx, "hi"); err != nil {
			t.Fatal(err)
		}
		if err := push.SendBytes(ctx, []byte("raw")); err != nil {
			t.Fatal(err)
		}
		m, err := pull.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.Free()
	}
	for range jobs {
		<-handled
	}
	if err := pusher.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Every job is acked on both sides: the counters are at rest.
	ztest.Eventually(t, 10*time.Second, "puller's acks counted", func() bool { return puller.Stats().Acked == jobs })

	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", err, probs)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}

	ps, pl, rq, rp := pusher.Stats(), puller.Stats(), requester.Stats(), replier.Stats()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   uint64
	}{
		{"zpeer_pattern_sent_messages_total", map[string]string{"role": "pusher", "name": "jobs"}, ps.Sent},
		{"zpeer_pattern_acked_messages_total", map[string]string{"role": "pusher", "name": "jobs"}, ps.Acked},
		{"zpeer_pattern_delivered_messages_total", map[string]string{"role": "puller", "name": "jobs"}, pl.Delivered},
		{"zpeer_pattern_acked_messages_total", map[string]string{"role": "puller", "name": "jobs"}, pl.Acked},
		{"zpeer_pattern_sent_messages_total", map[string]string{"role": "requester", "name": "echo"}, rq.Sent},
		{"zpeer_pattern_delivered_messages_total", map[string]string{"role": "replier", "name": "echo"}, rp.Delivered},
		{"zpeer_outbox_appends_total", map[string]string{"role": "pusher", "name": "jobs"}, ps.Outbox.Appends},
		{"zpeer_outbox_acks_total", map[string]string{"role": "pusher", "name": "jobs"}, ps.Outbox.Acks},
		{"zpeer_socket_received_messages_total", map[string]string{"socket": "raw-pull", "type": "PULL"}, jobs},
		{"zpeer_socket_sent_messages_total", map[string]string{"socket": "raw-push", "type": "PUSH"}, jobs},
		{"zpeer_socket_received_bytes_total", map[string]string{"socket": "raw-pull", "type": "PULL"}, 3 * jobs},
		{"zpeer_socket_connects_total", map[string]string{"socket": "raw-push", "type": "PUSH"}, 1},
		{"zpeer_socket_peer_received_messages_total", map[string]string{"socket": "raw-pull"}, jobs},
		{"zpeer_socket_rejected_connections_total", map[string]string{"socket": "raw-pull", "reason": "handshake"}, 0},
	} {
		if c.want == 0 && !strings.Contains(c.name, "rejected") {
			t.Fatalf("%s%v: the Stats value is 0, the check would prove nothing", c.name, c.labels)
		}
		if got := value(t, fams, c.name, c.labels); got != float64(c.want) {
			t.Errorf("%s%v = %v, want %d (Stats)", c.name, c.labels, got, c.want)
		}
	}
	if ps.Sent != jobs || pl.Delivered != jobs || rq.Sent != jobs {
		t.Errorf("Stats: pushed %d, handled %d, requested %d; want %d each", ps.Sent, pl.Delivered, rq.Sent, jobs)
	}
	if got := value(t, fams, "zpeer_outbox_jobs", map[string]string{"role": "pusher"}); got != 0 {
		t.Errorf("outbox holds %v jobs after Drain", got)
	}

	// Histograms: counts and sums from Stats.
	for _, h := range []struct {
		name, role string
		st         pattern.LatencyStats
	}{
		{"zpeer_pattern_round_trip_seconds", "requester", rq.Latency},
		{"zpeer_pattern_round_trip_seconds", "pusher", ps.Latency},
		{"zpeer_pattern_handler_seconds", "replier", rp.Handler},
		{"zpeer_pattern_handler_seconds", "puller", pl.Handler},
	} {
		m := find(t, fams, h.name, map[string]string{"role": h.role})
		if m == nil || m.Histogram == nil {
			t.Fatalf("no histogram %s{role=%s}", h.name, h.role)
		}
		hg := m.Histogram
		if hg.GetSampleCount() != h.st.Count || h.st.Count != jobs {
			t.Errorf("%s{role=%s}: count %d, Stats %d, want %d", h.name, h.role, hg.GetSampleCount(), h.st.Count, jobs)
		}
		if hg.GetSampleSum() != h.st.Sum.Seconds() {
			t.Errorf("%s{role=%s}: sum %v, Stats %v", h.name, h.role, hg.GetSampleSum(), h.st.Sum.Seconds())
		}
		b := hg.GetBucket()
		if len(b) != len(pattern.LatencyBounds) || b[len(b)-1].GetCumulativeCount() > jobs {
			t.Errorf("%s{role=%s}: buckets %v", h.name, h.role, b)
		}
	}
}

// TestAddErrors: duplicates and bad arguments are refused; Remove removes.
func TestAddErrors(t *testing.T) {
	c, err := NewCollector()
	if err != nil {
		t.Fatal(err)
	}
	s, err := socket.New(socket.PUSH)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := c.AddSocket("a", s); err != nil {
		t.Fatal(err)
	}
	if err := c.AddSocket("a", s); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second AddSocket(a): %v", err)
	}
	if err := c.AddPattern("broker", "x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddPattern(broker): %v", err)
	}
	if err := c.AddDiscoveryStack(); err != nil {
		t.Fatal(err)
	}
	if err := c.AddDiscoveryStack(); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second AddDiscoveryStack: %v", err)
	}
	if _, err := NewCollector(WithPeerSeries(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("WithPeerSeries(0): %v", err)
	}
	if !c.Remove("a") || c.Remove("a") {
		t.Error("Remove(a) twice: want true then false")
	}
	if err := c.AddSocket("a", s); err != nil {
		t.Errorf("AddSocket after Remove: %v", err)
	}
	reg := gather(t, c)
	if n, err := testutil.GatherAndCount(reg, "zpeer_socket_peers"); err != nil || n != 1 {
		t.Errorf("zpeer_socket_peers series: %d %v", n, err)
	}
}

// TestPeerSeriesCapped: WithPeerSeries(2) exposes two of three peers.
func TestPeerSeriesCapped(t *testing.T) {
	c, err := NewCollector(WithPeerSeries(2))
	if err != nil {
		t.Fatal(err)
	}
	pull, err := socket.New(socket.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	ep, err := pull.Bind(loopback)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		push, err := socket.New(socket.PUSH)
		if err != nil {
			t.Fatal(err)
		}
		defer push.Close()
		if err := push.Connect(ep); err != nil {
			t.Fatal(err)
		}
	}
	ztest.Eventually(t, 10*time.Second, "three peers", func() bool { return pull.Peers() == 3 })
	if err := c.AddSocket("in", pull); err != nil {
		t.Fatal(err)
	}
	reg := gather(t, c)
	if n, err := testutil.GatherAndCount(reg, "zpeer_socket_peer_queued_messages"); err != nil || n != 2 {
		t.Errorf("per-peer series: %d %v, want 2", n, err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, fams, "zpeer_socket_peers", map[string]string{"socket": "in"}); got != 3 {
		t.Errorf("zpeer_socket_peers = %v, want 3", got)
	}
}

// TestEveryMetricDocumented: docs/operations.md names every metric the
// Collector can export, and nothing it cannot.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, d := range allDescs {
		m := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("docs/operations.md does not list %s", m[1])
		}
	}
	for _, m := range regexp.MustCompile("`(zpeer_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		if !names[m[1]] && !strings.HasSuffix(m[1], "_bucket") && !strings.HasSuffix(m[1], "_count") && !strings.HasSuffix(m[1], "_sum") {
			t.Errorf("docs/operations.md lists %s, which the Collector does not export", m[1])
		}
	}
}

// TestStateMetrics: a StateServer and a Mirror, values equal to Stats.
func TestStateMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := pattern.NewStateServer[string](pattern.WithBind(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := range 5 {
		if err := srv.Set(fmt.Sprint("k", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	m, err := pattern.NewMirror[string](pattern.WithConnect(srv.Endpoints()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Delete("k0"); err != nil {
		t.Fatal(err)
	}
	ztest.Eventually(t, 10*time.Second, "the mirror has the delete", func() bool { return m.Len() == 4 })
	c, err := NewCollector()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddState(RoleStateServer, "cfg", srv); err != nil {
		t.Fatal(err)
	}
	if err := c.AddState(RoleMirror, "cfg", m); err != nil {
		t.Fatal(err)
	}
	if err := c.AddState(RolePuller, "cfg", m); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddState(puller): %v", err)
	}
	reg := gather(t, c)
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", err, probs)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ss, ms := srv.Stats(), m.Stats()
	for _, c := range []struct {
		name, role string
		want       float64
	}{
		{"zpeer_state_keys", "state_server", float64(ss.Keys)},
		{"zpeer_state_keys", "mirror", float64(ms.Keys)},
		{"zpeer_state_sequence", "mirror", float64(ms.Seq)},
		{"zpeer_state_changes_total", "state_server", float64(ss.Changes)},
		{"zpeer_state_snapshots_total", "mirror", float64(ms.Snapshots)},
		{"zpeer_state_mirrors", "state_server", float64(ss.Mirrors)},
	} {
		if got := value(t, fams, c.name, map[string]string{"role": c.role, "name": "cfg"}); got != c.want || c.want == 0 {
			t.Errorf("%s{role=%s} = %v, Stats %v (must be non-zero)", c.name, c.role, got, c.want)
		}
	}
	if ss.Keys != 4 || ms.Seq != 6 {
		t.Errorf("Stats: server keys %d, mirror seq %d; want 4 and 6", ss.Keys, ms.Seq)
	}
}
