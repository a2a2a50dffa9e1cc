package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

// The command line talks to the typed Go API: zpeer req to a
// pattern.Replier[string, string], zpeer pub --body json to a
// pattern.Subscriber of a struct, zpeer sub from a pattern.Publisher.
func TestTypedPeers(t *testing.T) {
	t.Parallel()
	rep, err := pattern.NewReplier(func(_ context.Context, s string) (string, error) {
		return "<" + s + ">", nil
	}, pattern.WithBind(local))
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	out, stderr, code := zpeer(t, "", "req", "--connect", rep.Endpoints()[0], "typed")
	if code != 0 || out != "<typed>\n" {
		t.Fatalf("zpeer req to a Replier: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	type Reading struct {
		Name  string
		Value float64
	}
	sub, err := pattern.NewSubscriber[Reading](pattern.WithBind(local), pattern.WithTopics("r"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	start(t, "", "pub", "--connect", sub.Endpoints()[0], "--topic", "r", "--body", "json",
		`{"Name":"temp","Value":21.5}`).mustSucceed()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := sub.Recv(ctx)
	if err != nil || m.Value != (Reading{"temp", 21.5}) || m.Topic != "r" {
		t.Fatalf("Subscriber got %+v, %v", m, err)
	}

	pub, err := pattern.NewPublisher[Reading](pattern.WithBind(local), pattern.WithName("gopub"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	zsub := start(t, "", "sub", "--connect", pub.Endpoints()[0], "--count", "1", "--json")
	// Published once the subscription has arrived, it is delivered.
	if err := pub.WaitSubscribers(ctx, 1); err != nil {
		t.Fatalf("zpeer sub's subscription did not arrive: %v; stderr %q", err, zsub.stderr.String())
	}
	if err := pub.Publish(ctx, "r", Reading{"hum", 40}); err != nil {
		t.Fatal(err)
	}
	zsub.mustSucceed()
	var r record
	if err := json.Unmarshal([]byte(zsub.lines()[0]), &r); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(r.Body)
	if r.Topic != "r" || r.Sender != "gopub" || !strings.Contains(string(body), `"Name":"hum"`) {
		t.Fatalf("zpeer sub from a Publisher: %+v (body %s)", r, body)
	}
}

// Issue 12 item 8: a Go struct with json tags (and no msgpack tags) reads
// what zpeer push --body json sends, key for key.
func TestTypedJSONTags(t *testing.T) {
	t.Parallel()
	type Job struct {
		UserID int    `json:"user_id"`
		Name   string `json:"name,omitempty"`
	}
	got := make(chan Job, 1)
	pl, err := pattern.NewPuller(func(_ context.Context, j Job) error { got <- j; return nil },
		pattern.WithBind(local), pattern.WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	start(t, "", "push", "--connect", pl.Endpoints()[0], "--body", "json", `{"user_id":7,"name":"ann"}`).mustSucceed()
	select {
	case j := <-got:
		if j != (Job{UserID: 7, Name: "ann"}) {
			t.Fatalf("the Puller got %+v, want user_id 7 and name ann", j)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nothing pulled")
	}
}
