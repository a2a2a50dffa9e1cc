package main

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

// recorder is an io.Writer that keeps what each write call was given.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.writes, "")
}

// LineOut returns once its line, and the lines buffered before it, went
// through a write call; Line leaves them to the timer.
func TestLineOutWritesBeforeReturning(t *testing.T) {
	var r recorder
	lw := newLineWriter(&r)
	defer lw.Close()
	lw.Line([]byte("one"))
	lw.Line([]byte("two"))
	if err := lw.LineOut([]byte("three")); err != nil {
		t.Fatal(err)
	}
	if got := r.text(); got != "one\ntwo\nthree\n" {
		t.Fatalf("after LineOut the writer has %q", got)
	}
	lw.Line([]byte("four"))
	if err := lw.Out(); err != nil || r.text() != "one\ntwo\nthree\nfour\n" {
		t.Fatalf("after Out: %q, %v", r.text(), err)
	}
}

// A failed write fails the lines it carried and every later one.
func TestLineOutReportsTheWriteError(t *testing.T) {
	r := recorder{fail: errors.New("broken pipe")}
	lw := newLineWriter(&r)
	if err := lw.LineOut([]byte("lost")); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("LineOut on a failing writer: %v", err)
	}
	if err := lw.Line([]byte("later")); err == nil {
		t.Fatal("Line after a failed write succeeded")
	}
	if err := lw.Close(); err == nil {
		t.Fatal("Close after a failed write succeeded")
	}
}

// Concurrent LineOut calls each return with their own line written.
func TestLineOutConcurrent(t *testing.T) {
	var r recorder
	lw := newLineWriter(&r)
	defer lw.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				line := strings.Repeat("x", i+1) + "-" + string(rune('a'+j%26))
				if err := lw.LineOut([]byte(line)); err != nil {
					t.Error(err)
					return
				}
				if !strings.Contains(r.text(), line+"\n") {
					t.Errorf("LineOut(%q) returned before the line was written", line)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// JSON output writes <, > and & as they are (Z85 keys contain them).
func TestJSONDoesNotEscapeHTML(t *testing.T) {
	b, err := marshalJSON(map[string]string{"key": "a<b>&c"})
	if err != nil || string(b) != `{"key":"a<b>&c"}` {
		t.Fatalf("marshalJSON: %s, %v", b, err)
	}
}
