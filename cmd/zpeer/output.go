package main

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// lineWriter writes message lines to standard output through a buffer that
// a timer flushes shortly after the first unflushed line, so a fast stream
// costs few write calls and a slow one still shows each line at once.
type lineWriter struct {
	mu      sync.Mutex
	w       *bufio.Writer
	timer   *time.Timer
	pending bool
	err     error
}

const flushDelay = 5 * time.Millisecond

func newLineWriter(w io.Writer) *lineWriter {
	lw := &lineWriter{w: bufio.NewWriterSize(w, 64<<10)}
	lw.timer = time.AfterFunc(time.Hour, lw.Flush)
	lw.timer.Stop()
	return lw
}

// Line writes b and a newline.
func (lw *lineWriter) Line(b []byte) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.err != nil {
		return lw.err
	}
	lw.w.Write(b)
	if err := lw.w.WriteByte('\n'); err != nil {
		lw.err = err
		return err
	}
	if !lw.pending {
		lw.pending = true
		lw.timer.Reset(flushDelay)
	}
	return nil
}

// JSON writes v as one line of JSON.
func (lw *lineWriter) JSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return lw.Line(b)
}

// Flush writes out everything buffered.
func (lw *lineWriter) Flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.pending = false
	if err := lw.w.Flush(); err != nil && lw.err == nil {
		lw.err = err
	}
}

// Close stops the timer and flushes.
func (lw *lineWriter) Close() error {
	lw.timer.Stop()
	lw.Flush()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.err
}
