package main

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/zpeer/zpeer/examples/internal/run"
	"github.com/zpeer/zpeer/pattern"
)

var bin string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = run.Build(".", "bridge")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// python is Debian's interpreter, where python3-zmq installs.
const python = "/usr/bin/python3"

// An unmodified pyzmq sensor publishes raw frames to the bridge and queries
// it over REQ/REP; a typed zpeer Subscriber gets the readings.
func TestBridgeWithPyzmq(t *testing.T) {
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is missing: install Debian's python3-zmq to run the pyzmq bridge test", python)
	}
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Skipf("pyzmq is missing (%v: %s): apt-get install python3-zmq", err, out)
	}
	br := run.Start(t, "bridge", bin)
	eps := br.WaitLine(`^bridge: sensors publish to (\S+), query (\S+); zpeer subscribers connect to (\S+)$`)
	subEP, queryEP, pubEP := eps[1], eps[2], eps[3]

	sub, err := pattern.NewSubscriber[Reading](pattern.WithConnect(pubEP), pattern.WithTopics("sensor.temp"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), run.Timeout)
	defer cancel()
	for sub.Publishers() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the subscriber did not connect to the bridge")
		case <-time.After(10 * time.Millisecond):
		}
	}

	sensor := run.Start(t, "sensor.py", python, "sensor.py", "--connect", subEP, "--query", queryEP, "--count", "150")
	for i := 0; i < 3; i++ {
		m, err := sub.Recv(ctx)
		if err != nil {
			t.Fatalf("reading %d: %v", i, err)
		}
		if m.Value.Name != "temp" || m.Value.Value < 19 || m.Value.Value > 24 || m.Sender != "bridge" || m.Seq == 0 {
			t.Errorf("reading %d: %+v", i, m)
		}
	}
	sensor.WaitLine(`^sensor: the bridge says temp=\d+\.\d\d$`)
	sensor.MustSucceed()
	br.Signal(os.Interrupt)
	br.Wait()
}
