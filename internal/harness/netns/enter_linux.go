package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNamespace runs fn on a thread of its own that has entered the named
// network namespace (/run/netns/name, as ip netns add makes it). The
// thread goes back to its namespace afterwards; if it cannot, it ends with
// the goroutine that ran fn instead of serving others in the wrong
// namespace.
func inNamespace(name string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- enterAndRun(name, fn)
	}()
	return <-done
}

// enterAndRun runs on a locked thread; it unlocks it only when the thread
// is back in its own namespace.
func enterAndRun(name string, fn func() error) error {
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: leave %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
