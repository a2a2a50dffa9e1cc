//go:build linux

package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pull --ack acknowledges a job only once its output has left the
// process: with the worker's standard output a full pipe, the job is done
// (--exec ran) but not acknowledged, until the pipe is read.
func TestAckPullAcksOnlyWrittenOutput(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size, err := unix.FcntlInt(w.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, size)); err != nil { // the pipe is full
		t.Fatal(err)
	}
	push := start(t, "", "push", "--ack", "--bind", local, "--timeout", "30s", "only")
	mark := filepath.Join(t.TempDir(), "started")
	worker := exec.Command(zpeerBin, "pull", "--ack", "--connect", push.endpoint(), "--exec", "touch "+mark+"; cat")
	worker.Stdout = w
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { worker.Process.Kill(); worker.Wait() })
	waitUntil(t, 20*time.Second, "the worker to run the job", func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
	// The job is done and its line is waiting for the pipe: an ack now
	// would be an ack from a buffer, lost if the worker died.
	select {
	case <-push.done:
		t.Fatalf("push exited (%d) while its job's output was still inside the worker", push.code)
	case <-time.After(time.Second): // a window for a wrong ack, not a wait for an event
	}
	br := bufio.NewReader(r)
	if _, err := io.CopyN(io.Discard, br, int64(size)); err != nil {
		t.Fatal(err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != "only\n" {
		t.Fatalf("worker output %q, %v", got, err)
	}
	push.mustSucceed()
}
