package main

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// lineWriter writes message lines to standard output through a buffer that
// a timer flushes shortly after the first unflushed line, so a fast stream
// costs few write calls and a slow one still shows each line at once.
//
// A command that reports success for a line it printed (pull --ack
// acknowledging a job, rep replying) writes it with LineOut, which returns
// only once the line has left the process: a write call on standard output
// returned with it (and with the lines buffered before it).
type lineWriter struct {
	w     io.Writer
	wmu   sync.Mutex // held while writing to w, so that flushes keep their order; taken before mu
	timer *time.Timer

	mu      sync.Mutex
	buf     []byte // lines not yet handed to w
	spare   []byte
	cur     *batch // the flush that will take buf
	pending bool   // buf holds lines and the timer is set
	err     error  // the first write error: every later line fails with it
}

// batch is the lines one flush writes.
type batch struct {
	done chan struct{} // closed once written (or not: err)
	err  error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

const (
	flushDelay  = 5 * time.Millisecond
	flushBuffer = 64 << 10 // a buffer this full is written at once
)

func newLineWriter(w io.Writer) *lineWriter {
	lw := &lineWriter{w: w, cur: newBatch()}
	lw.timer = time.AfterFunc(time.Hour, func() { lw.flush() })
	lw.timer.Stop()
	return lw
}

// Line writes b and a newline.
func (lw *lineWriter) Line(b []byte) error {
	lw.mu.Lock()
	_, full, err := lw.lineLocked(b)
	lw.mu.Unlock()
	if full {
		return lw.flush()
	}
	return err
}

// lineLocked appends b and a newline to the buffer, and returns the batch
// they belong to and whether the buffer is full. lw.mu is held.
func (lw *lineWriter) lineLocked(b []byte) (bt *batch, full bool, err error) {
	if lw.err != nil {
		return nil, false, lw.err
	}
	lw.buf = append(append(lw.buf, b...), '\n')
	if !lw.pending {
		lw.pending = true
		lw.timer.Reset(flushDelay)
	}
	return lw.cur, len(lw.buf) >= flushBuffer, nil
}

// LineOut writes b and a newline and returns once they are out of the
// process (a write call on the underlying writer returned with them), or
// with the error that stopped them.
func (lw *lineWriter) LineOut(b []byte) error {
	lw.mu.Lock()
	bt, _, err := lw.lineLocked(b)
	if err != nil {
		lw.mu.Unlock()
		return err
	}
	lw.mu.Unlock()
	lw.flush() // writes bt, or finds that an earlier flush did
	<-bt.done
	return bt.err
}

// Out writes out every line written so far, and returns once they are out
// of the process.
func (lw *lineWriter) Out() error { return lw.flush() }

// Flush writes out everything buffered.
func (lw *lineWriter) Flush() { lw.flush() }

// flush writes the buffered lines, and returns the error that stopped
// them or lines written before them.
func (lw *lineWriter) flush() error {
	lw.wmu.Lock()
	defer lw.wmu.Unlock()
	lw.mu.Lock()
	data, bt, err := lw.buf, lw.cur, lw.err
	lw.pending = false
	if len(data) == 0 {
		lw.mu.Unlock()
		return err
	}
	lw.buf, lw.cur = lw.spare[:0], newBatch()
	lw.mu.Unlock()

	if err == nil { // else lines that came in after a write failed: they fail too
		_, err = lw.w.Write(data)
	}

	lw.mu.Lock()
	lw.spare = data[:0]
	if err != nil && lw.err == nil {
		lw.err = err
	}
	lw.mu.Unlock()
	bt.err = err
	close(bt.done)
	return err
}

// JSON writes v as one line of JSON.
func (lw *lineWriter) JSON(v any) error {
	b, err := marshalJSON(v)
	if err != nil {
		return err
	}
	return lw.Line(b)
}

// Close stops the timer and flushes.
func (lw *lineWriter) Close() error {
	lw.timer.Stop()
	return lw.flush()
}

// marshalJSON is json.Marshal without the escaping meant for HTML: zpeer
// writes <, > and & as they are (Z85 keys contain them).
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
