package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const python = "/usr/bin/python3"

// needPyzmq skips unless Debian's python3 with python3-zmq is there.
func needPyzmq(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is missing: install Debian's python3-zmq to run the pyzmq interop tests", python)
	}
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Skipf("pyzmq is missing (%v: %s): apt-get install python3-zmq", err, out)
	}
}

// pyzmq starts a python program; it prints "bound EP" first, like zpeer.
func pyzmq(t *testing.T, script string) *proc {
	t.Helper()
	return startBin(t, python, "", "-c", script)
}

// --codec raw talks to plain pyzmq sockets both ways: a pyzmq REP answers
// zpeer req, and a pyzmq PUSH feeds zpeer pull, multipart frames included.
func TestRawWithPyzmq(t *testing.T) {
	t.Parallel()
	needPyzmq(t)
	rep := pyzmq(t, `
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
port = s.bind_to_random_port("tcp://127.0.0.1")
print("bound tcp://127.0.0.1:%d" % port, file=sys.stderr, flush=True)
for _ in range(2):
    s.send(s.recv().upper())
s.close(linger=1000)
ctx.term()
`)
	ep := rep.endpoint()
	out, stderr, code := zpeer(t, "", "req", "--codec", "raw", "--connect", ep, "hello", "pyzmq")
	if code != 0 || out != "HELLO\nPYZMQ\n" {
		t.Fatalf("zpeer req to pyzmq REP: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	rep.mustSucceed()

	pull := start(t, "", "pull", "--codec", "raw", "--bind", local, "--count", "2", "--json")
	pullEP := pull.endpoint()
	push := pyzmq(t, `
import zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.connect("`+pullEP+`")
s.send(b"one frame")
s.send_multipart([b"two", b"frames"])
s.close(linger=5000)
ctx.term()
`)
	push.mustSucceed()
	pull.mustSucceed()
	lines := pull.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], `"body":"one frame"`) ||
		!strings.Contains(lines[1], `"frames":["two","frames"]`) {
		t.Fatalf("zpeer pull from pyzmq PUSH:\n%s", strings.Join(lines, "\n"))
	}

	// And zpeer sub prints a pyzmq publisher's [topic, data] as TOPIC DATA.
	sub := start(t, "", "sub", "--codec", "raw", "--bind", local, "--topic", "weather", "--count", "1")
	subEP := sub.endpoint()
	pub := pyzmq(t, `
import time, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUB)
s.connect("`+subEP+`")
for _ in range(200):  # until the subscription has arrived; bounded
    s.send_multipart([b"weather", b"sunny"])
    time.sleep(0.02)
s.close(linger=0)
ctx.term()
`)
	sub.mustSucceed()
	equalLines(t, "zpeer sub from pyzmq PUB", sub.lines(), "weather sunny")
	pub.cmd.Process.Kill()
}
