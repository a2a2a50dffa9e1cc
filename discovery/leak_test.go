package discovery

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutine is not parallel: it runs while no parallel
// test does, so every goroutine it finds is one Close left behind.
// (TestMain also checks the whole run.)
func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	svc := uniqueService(t)
	w, err := NewWatcher(svc, loopbackOpts(uniqueNode(t, "w"))...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:45000"}, loopbackOpts(uniqueNode(t, "a"))...)
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Events()
	eventually(t, 5*time.Second, "discovery", func() bool { return len(w.Peers()) == 1 })
	// Let a few fresh browses start and stop.
	w.Refresh()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
