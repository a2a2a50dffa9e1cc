package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zpeer/zpeer/examples/internal/run"
)

var bin string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = run.Build(".", "pipeline")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Three workers start, one is killed with SIGKILL midway, a fourth joins
// late: the sink still gets every result, and the ventilator sees every
// job acknowledged.
func TestPipelineSurvivesAKilledWorker(t *testing.T) {
	const jobs = "300"
	sink := run.Start(t, "sink", bin, "-role", "sink", "-jobs", jobs)
	sinkEP := sink.WaitLine(`^sink listening on (\S+)$`)[1]
	vent := run.Start(t, "ventilator", bin, "-role", "ventilator", "-jobs", jobs, "-cost", "5ms")
	ventEP := vent.WaitLine(`^ventilator listening on (\S+)$`)[1]
	worker := func(name string) *run.Proc {
		return run.Start(t, name, bin, "-role", "worker", "-name", name, "-ventilator", ventEP, "-sink", sinkEP)
	}
	w1, w2, w3 := worker("w1"), worker("w2"), worker("w3")
	// Each worker says its process id, the one kill -9 must be given.
	if pid := w3.WaitLine(`^w3 working for \S+ \(pid (\d+)\)$`)[1]; pid != strconv.Itoa(w3.Pid()) {
		t.Fatalf("w3 says pid %s, its pid is %d", pid, w3.Pid())
	}
	// w3 dies in the middle of its work, without a word.
	w3.WaitLine(`^w3 did job \d+$`)
	w3.WaitLine(`^w3 did job \d+$`)
	w3.Signal(syscall.SIGKILL)
	// A worker that comes later gets work too.
	w4 := worker("w4")
	sink.WaitLine(`^sink: all 300 results`)
	vent.WaitLine(`^ventilator: 300 jobs acknowledged, \d+ redelivered, 0 dead$`)
	vent.MustSucceed()
	for _, w := range []*run.Proc{w1, w2, w4} {
		w.Signal(os.Interrupt)
		w.Wait()
	}
	sink.Signal(os.Interrupt)
	sink.WaitLine(`^sink: 300 of 300 results, \d+ duplicates ignored$`)
	if code := sink.Wait(); code != 0 {
		t.Errorf("sink: exit %d", code)
	}
}

// Issue 12 item 16: by default a job lasts long enough to kill a worker in
// the middle of it, and the documentation says how to reach the worker
// with kill -9 (build first: under go run, kill hits the go command).
func TestPipelineDefaultsLetYouKillAWorker(t *testing.T) {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	m := regexp.MustCompile(`-cost duration\s*\n[^\n]*\(default ([^)]+)\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no -cost default in -h:\n%s", out)
	}
	if d, err := time.ParseDuration(string(m[1])); err != nil || d < 200*time.Millisecond {
		t.Fatalf("default -cost %s: a worker is done before anyone can kill it", m[1])
	}
	for _, doc := range []string{"main.go", "../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(string(b)), " ")
		if !strings.Contains(text, "go build -o pipeline ./examples/pipeline") || !strings.Contains(text, "pid") {
			t.Errorf("%s does not say to build the example first and kill the worker's pid", doc)
		}
	}
}
