package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// sameTerminal reports whether a and b are the same terminal device.
func sameTerminal(a, b any) bool {
	fa, ok1 := a.(*os.File)
	fb, ok2 := b.(*os.File)
	if !ok1 || !ok2 || !isTerminal(fa) || !isTerminal(fb) {
		return false
	}
	sa, err1 := fa.Stat()
	sb, err2 := fb.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// statusLine redraws one line of progress on a terminal, in place, a few
// times a second. On anything but a terminal it does nothing: logs and
// pipes get plain lines instead.
type statusLine struct {
	w    io.Writer
	mu   *sync.Mutex // the stderr lock shared with error lines
	text func() string
	stop chan struct{}
	done chan struct{}
	last string
}

// startStatus starts redrawing text() on w every interval, if w is a
// terminal. It returns nil otherwise; a nil *statusLine's methods do
// nothing.
func startStatus(w io.Writer, mu *sync.Mutex, interval time.Duration, text func() string) *statusLine {
	if !isTerminal(w) {
		return nil
	}
	s := &statusLine{w: w, mu: mu, text: text, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop(interval)
	return s
}

func (s *statusLine) loop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.draw()
		}
	}
}

func (s *statusLine) draw() {
	line := s.text()
	s.mu.Lock()
	defer s.mu.Unlock()
	if line != s.last {
		fmt.Fprintf(s.w, "\r\033[K%s", line)
		s.last = line
	}
}

// clear erases the status line (call with the stderr lock held) so that an
// ordinary line can be written; the next tick redraws it.
func (s *statusLine) clear() {
	if s == nil || s.last == "" {
		return
	}
	fmt.Fprint(s.w, "\r\033[K")
	s.last = ""
}

// Stop stops redrawing and erases the line.
func (s *statusLine) Stop() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	s.clear()
	s.mu.Unlock()
}

// bar renders a progress bar of width cells for done out of total.
func bar(done, total float64, width int) string {
	if total <= 0 {
		return strings.Repeat("-", width)
	}
	n := int(done / total * float64(width))
	n = max(0, min(n, width))
	return strings.Repeat("#", n) + strings.Repeat("-", width-n)
}
