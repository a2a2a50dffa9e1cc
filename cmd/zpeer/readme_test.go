package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeQuickstart runs the README's command-line quick start as it is
// written, from the repository root, and checks what it prints.
func TestReadmeQuickstart(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := namedBlock(t, "README.md", "quickstart")
	// The quick start uses fixed ports, as a reader would; skip rather than
	// fail when something else on this machine holds them.
	for _, port := range regexp.MustCompile(`tcp://127\.0\.0\.1:(\d+)`).FindAllStringSubmatch(script, -1) {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port[1])
		if err != nil {
			t.Skipf("port %s, used by the quick start, is busy: %v", port[1], err)
		}
		ln.Close()
	}
	// It may build ./zpeer at the root (git ignores it); leave no new file.
	for _, name := range []string{"zpeer"} {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			t.Cleanup(func() { os.Remove(p) })
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // background jobs too
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the script left running
	if err != nil {
		t.Fatalf("the quick start failed: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, stdout.String(), stderr.String())
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	// Whatever else the quick start shows, each zpeer command in it must
	// have done its job: check the outputs its examples promise.
	out := stdout.String()
	for _, want := range quickstartOutputs(script) {
		if !strings.Contains(out, want) {
			t.Errorf("quick start output lacks %q", want)
		}
	}
}

// quickstartOutputs lists what the README's quick start should print, for
// the commands it is known to contain.
func quickstartOutputs(script string) []string {
	var want []string
	if strings.Contains(script, "tr a-z A-Z") && strings.Contains(script, " hello") {
		want = append(want, "HELLO")
	}
	if strings.Contains(script, `printf 'job 1\njob 2\n'`) {
		want = append(want, "job 1\n", "job 2\n")
	}
	if strings.Contains(script, "--topic weather sunny") {
		want = append(want, "weather sunny\n")
	}
	if strings.Contains(script, "--exec 'sed s/job/done/'") {
		want = append(want, "done A\n", "done B\n")
	}
	if strings.Contains(script, "'found you'") && strings.Contains(script, "--json") {
		want = append(want, `"body":"found you"`)
	}
	if strings.Contains(script, "--server-key") && strings.Contains(script, "'for your eyes only'") {
		want = append(want, "for your eyes only\n")
	}
	return want
}
