package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var metricsLine = regexp.MustCompile(`zpeer: metrics on (http://[^ ]+/metrics)`)

// metricsURL waits for the "metrics on URL" line of p.
func metricsURL(t *testing.T, p *proc) string {
	t.Helper()
	var url string
	waitUntil(t, 10*time.Second, "the metrics line", func() bool {
		m := metricsLine.FindStringSubmatch(p.stderr.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	return url
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// sample returns the value of the series name{labels} in a text
// exposition, parsed with client_golang's parser.
func sample(t *testing.T, text, name string, labels map[string]string) float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	f := fams[name]
	if f == nil {
		t.Fatalf("no %s in the scrape", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		return value(m)
	}
	t.Fatalf("no %s%v in the scrape", name, labels)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// TestPullMetrics scrapes a running `zpeer pull --metrics` after it
// received a known number of messages, and `pull --ack --metrics` after a
// known number of jobs; a second, independent parser (Python's
// prometheus_client) reads the same exposition.
func TestPullMetrics(t *testing.T) {
	t.Parallel()
	const n = 137
	pull := start(t, "", "pull", "--bind", local, "--metrics", "127.0.0.1:0")
	ep := pull.endpoint()
	url := metricsURL(t, pull)
	start(t, nlines(n), "push", "--connect", ep).mustSucceed()
	waitUntil(t, 10*time.Second, "every line printed", func() bool { return len(pull.lines()) == n })
	text := scrape(t, url)
	labels := map[string]string{"socket": "pull", "type": "PULL"}
	if got := sample(t, text, "zpeer_socket_received_messages_total", labels); got != n {
		t.Errorf("received %v, want %d", got, n)
	}
	if got := sample(t, text, "zpeer_socket_connects_total", labels); got != 1 {
		t.Errorf("connects %v, want 1", got)
	}
	pythonParses(t, text, "zpeer_socket_received_messages", n)
	pull.signal(syscall.SIGINT)
	pull.wait()

	// Acked: the puller role's figures.
	push := start(t, nlines(n), "push", "--ack", "--bind", local)
	pep := push.endpoint()
	apull := start(t, "", "pull", "--ack", "--connect", pep, "--metrics", "127.0.0.1:0")
	aurl := metricsURL(t, apull)
	push.mustSucceed()
	text = scrape(t, aurl)
	role := map[string]string{"role": "puller", "name": "pull"}
	if got := sample(t, text, "zpeer_pattern_delivered_messages_total", role); got != n {
		t.Errorf("acked pull delivered %v, want %d", got, n)
	}
	if got := sample(t, text, "zpeer_pattern_acked_messages_total", role); got != n {
		t.Errorf("acked pull acked %v, want %d", got, n)
	}
	if !strings.Contains(text, fmt.Sprintf(`zpeer_pattern_handler_seconds_count{name="pull",role="puller"} %d`, n)) {
		t.Errorf("no handler-time histogram with %d samples:\n%s", n, text)
	}
	apull.signal(syscall.SIGINT)
	apull.wait()
}

// pythonParses reads the exposition with python3-prometheus-client and
// checks one counter's value (the family name without _total).
func pythonParses(t *testing.T, text, family string, want float64) {
	t.Helper()
	if exec.Command("/usr/bin/python3", "-c", "import prometheus_client").Run() != nil {
		t.Log("python3-prometheus-client is not installed (./test.sh installs it as root): the second parser is skipped")
		return
	}
	script := `
import sys
from prometheus_client.parser import text_string_to_metric_families
fam = sys.argv[1]
for f in text_string_to_metric_families(sys.stdin.read()):
    if f.name == fam:
        print(sum(s.value for s in f.samples if s.name == fam + "_total"))
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, family)
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python parser: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != fmt.Sprint(want) && got != fmt.Sprintf("%.1f", want) {
		t.Errorf("python's parser read %s = %q, want %v", family, got, want)
	}
}

// TestDemoMetrics: `zpeer demo --metrics` serves every pattern role of its
// network while it runs.
func TestDemoMetrics(t *testing.T) {
	t.Parallel()
	demo := start(t, "", "demo", "--phase", "1s", "--quiet", "--metrics", "127.0.0.1:0")
	url := metricsURL(t, demo)
	seen := map[string]bool{}
	roles := []string{"requester", "replier", "publisher", "subscriber", "pusher", "puller"}
	waitUntil(t, 60*time.Second, "every role in a scrape", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false // the demo may be between phases; it serves until it ends
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, r := range roles {
			if strings.Contains(string(b), `zpeer_pattern_sent_messages_total{name=`) && strings.Contains(string(b), `role="`+r+`"`) {
				seen[r] = true
			}
		}
		return len(seen) == len(roles)
	})
	demo.mustSucceed()
}
