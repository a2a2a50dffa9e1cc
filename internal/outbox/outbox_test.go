package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func id(n int) ID {
	var i ID
	binary.BigEndian.PutUint64(i[8:], uint64(n))
	return i
}

func payload(n int) []byte { return fmt.Appendf(nil, "job-%06d", n) }

func open(t *testing.T, dir string, opts ...Option) *Log {
	t.Helper()
	l, err := Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// replayAll returns the payloads Replay hands back.
func replayAll(t *testing.T, l *Log) []string {
	t.Helper()
	var got []string
	if err := l.Replay(func(i ID, data []byte) error {
		if want := payload(int(binary.BigEndian.Uint64(i[8:]))); string(want) != string(data) {
			t.Errorf("id %x: payload %q, want %q", i, data, want)
		}
		got = append(got, string(data))
		return nil
	}); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return got
}

func names(ns ...int) []string {
	var s []string
	for _, n := range ns {
		s = append(s, string(payload(n)))
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func TestReplayUnacked(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"sync", nil},
		{"batched", []Option{WithInterval(5 * time.Millisecond)}},
		{"small-segments", []Option{WithSegmentSize(1024)}},
		{"batched-small-segments", []Option{WithSegmentSize(1024), WithInterval(time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, tc.opts...)
			ctx := context.Background()
			var want []int
			for i := 1; i <= 200; i++ {
				if err := l.Append(ctx, id(i), payload(i)); err != nil {
					t.Fatal(err)
				}
				if i%3 != 0 {
					l.Ack(id(i))
				} else {
					want = append(want, i)
				}
			}
			l.Ack(id(1000)) // unknown: nothing
			if s := l.Stats(); s.Messages != len(want) {
				t.Fatalf("Messages = %d, want %d", s.Messages, len(want))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := l.Append(ctx, id(999), nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close: %v, want ErrClosed", err)
			}
			l = open(t, dir, tc.opts...)
			got := replayAll(t, l)
			if strings.HasSuffix(tc.name, "small-segments") {
				// Compaction copied records forward: their order is
				// that of the copy.
				slices.Sort(got)
			}
			if !slices.Equal(got, names(want...)) {
				t.Fatalf("replayed %d records %v..., want %d", len(got), got[:min(3, len(got))], len(want))
			}
			if s := l.Stats(); s.Recovered != len(want) || s.Corrupt != 0 || s.Messages != len(want) {
				t.Fatalf("stats after reopen: %+v", s)
			}
			// Replayed records stay until acked: ack half, reopen again.
			for _, n := range want[:len(want)/2] {
				l.Ack(id(n))
			}
			l.Close()
			l = open(t, dir, tc.opts...)
			defer l.Close()
			got = replayAll(t, l)
			if strings.HasSuffix(tc.name, "small-segments") {
				slices.Sort(got)
			}
			if !slices.Equal(got, names(want[len(want)/2:]...)) {
				t.Fatalf("second reopen replayed %d, want %d", len(got), len(want)-len(want)/2)
			}
		})
	}
}

// lastSegment returns the path of the newest segment file.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if len(m) == 0 {
		t.Fatal("no segment")
	}
	slices.Sort(m)
	return m[len(m)-1]
}

func TestTornAndCorruptTail(t *testing.T) {
	rec := hdrLen + bodyMin + len(payload(1)) // every record here has this size
	for _, tc := range []struct {
		name    string
		damage  func(b []byte) []byte
		replays []int
	}{
		{"torn-payload", func(b []byte) []byte { return b[:len(b)-3] }, []int{1, 2}},
		{"torn-header", func(b []byte) []byte { return b[:len(b)-rec+5] }, []int{1, 2}},
		{"flipped-payload-byte", func(b []byte) []byte { b[len(b)-1] ^= 0x40; return b }, []int{1, 2}},
		{"flipped-crc", func(b []byte) []byte { b[len(b)-rec+4] ^= 1; return b }, []int{1, 2}},
		{"huge-length", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[len(b)-rec:], 1<<31)
			return b
		}, []int{1, 2}},
		{"zeroes-appended", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, []int{1, 2, 3}},
		{"middle-record-corrupt", func(b []byte) []byte { b[len(b)-rec-1] ^= 0xff; return b }, []int{1}},
		{"bad-magic", func(b []byte) []byte { b[0] = 'X'; return b }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir)
			for i := 1; i <= 3; i++ {
				if err := l.Append(context.Background(), id(i), payload(i)); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			path := lastSegment(t, dir)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			l = open(t, dir)
			got := replayAll(t, l)
			s := l.Stats()
			l.Close()
			if !slices.Equal(got, names(tc.replays...)) {
				t.Fatalf("replayed %q, want %q", got, names(tc.replays...))
			}
			if s.Corrupt != 1 || s.CorruptBytes <= 0 {
				t.Fatalf("Corrupt = %d (%d bytes), want 1", s.Corrupt, s.CorruptBytes)
			}
			// The damaged tail was cut off: counted once, and new records
			// after it replay normally.
			l = open(t, dir)
			if err := l.Append(context.Background(), id(4), payload(4)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			l = open(t, dir)
			defer l.Close()
			if got := replayAll(t, l); !slices.Equal(got, names(append(tc.replays, 4)...)) {
				t.Fatalf("after reopen replayed %q", got)
			}
			if s := l.Stats(); s.Corrupt != 0 {
				t.Fatalf("Corrupt = %d on second open, want 0", s.Corrupt)
			}
		})
	}
}

func TestGroupCommit(t *testing.T) {
	l := open(t, t.TempDir())
	defer l.Close()
	const writers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := w*each + i
				if err := l.Append(context.Background(), id(n), payload(n)); err != nil {
					errs <- err
					return
				}
				l.Ack(id(n))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := l.Stats()
	// Each writer waits for its fsync, so while one runs the others queue
	// up behind it and share the next one.
	if s.Appends != writers*each || s.Syncs == 0 || s.Syncs > s.Appends/4 {
		t.Fatalf("%d appends took %d fsyncs: not shared", s.Appends, s.Syncs)
	}
	t.Logf("%d appends, %d fsyncs", s.Appends, s.Syncs)
}

func TestBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("messages-block", func(t *testing.T) {
		l := open(t, t.TempDir(), WithMaxMessages(2))
		defer l.Close()
		for i := 1; i <= 2; i++ {
			if err := l.Append(ctx, id(i), payload(i)); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- l.Append(ctx, id(3), payload(3)) }()
		select {
		case err := <-done:
			t.Fatalf("Append on a full log returned %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		l.Ack(id(1))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		if err := l.Append(tctx, id(4), payload(4)); !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Append past deadline: %v", err)
		}
	})
	t.Run("bytes-fail", func(t *testing.T) {
		l := open(t, t.TempDir(), WithMaxBytes(25), WithFailWhenFull())
		defer l.Close()
		if err := l.Append(ctx, id(1), payload(1)); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(ctx, id(2), payload(2)); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(ctx, id(3), payload(3)); !errors.Is(err, ErrFull) {
			t.Fatalf("third 10-byte record in 25 bytes: %v, want ErrFull", err)
		}
		if err := l.Append(ctx, id(4), make([]byte, 26)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("26-byte record: %v, want ErrTooLarge", err)
		}
		if err := l.Append(ctx, id(1), payload(1)); !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrFull) {
			t.Fatalf("duplicate: %v", err)
		}
		l.Ack(id(2))
		if err := l.Append(ctx, id(1), payload(1)); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("duplicate: %v, want ErrDuplicate", err)
		}
	})
	t.Run("close-unblocks", func(t *testing.T) {
		l := open(t, t.TempDir(), WithMaxMessages(1))
		if err := l.Append(ctx, id(1), payload(1)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- l.Append(ctx, id(2), payload(2)) }()
		waitFor(t, "a waiting Append", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.spaceCh != nil
		})
		l.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("Append waiting at Close: %v, want ErrClosed", err)
		}
	})
}

func TestOptionsAndLock(t *testing.T) {
	dir := t.TempDir()
	for _, opt := range []Option{WithInterval(-1), WithMaxMessages(0), WithMaxBytes(0), WithSegmentSize(10)} {
		if _, err := Open(dir, opt); !errors.Is(err, ErrOption) {
			t.Fatalf("bad option: %v", err)
		}
	}
	l := open(t, dir)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	l.Close()
	l.Close() // idempotent
	l = open(t, dir)
	l.Close()
}

// flushed reports whether l has written everything it buffered.
func flushed(l *Log) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf) == 0 && len(l.chunks) == 0
}

func segFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestSegmentsDeletedAndCompacted(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, WithSegmentSize(1024), WithInterval(time.Millisecond)) // batched: fast
	ctx := context.Background()
	// Record 0 is never acked: it pins the first segment until the
	// segment is copied forward.
	if err := l.Append(ctx, id(0), payload(0)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2000; i++ {
		if err := l.Append(ctx, id(i), payload(i)); err != nil {
			t.Fatal(err)
		}
		l.Ack(id(i))
	}
	waitFor(t, "old segments to go", func() bool {
		return flushed(l) && segFiles(t, dir) <= 4 && l.Stats().Compacted > 0
	})
	// 2001 records of 43 bytes and 2000 acks of 25 span over 200 segments.
	t.Logf("after 2000 acked: %d segment files, %+v", segFiles(t, dir), l.Stats())
	l.Close()
	l = open(t, dir, WithSegmentSize(1024))
	defer l.Close()
	if got := replayAll(t, l); !slices.Equal(got, names(0)) {
		t.Fatalf("replayed %q, want only record 0", got)
	}
}

// A first segment half full of records that are never acked (too dense to
// be compacted as sparse) does not pin the files behind it: once they
// pass twice the live bytes plus four segments, it is copied forward.
func TestDensePinnedSegmentCompacted(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, WithSegmentSize(4096), WithInterval(time.Millisecond)) // batched: fast
	ctx := context.Background()
	big := make([]byte, 200)
	var pinned []int
	for i := 0; i < 20; i++ { // about 4 KiB: the first segment
		if err := l.Append(ctx, id(i), big); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			l.Ack(id(i))
		} else {
			pinned = append(pinned, i)
		}
	}
	for i := 20; i < 5000; i++ {
		if err := l.Append(ctx, id(i), big); err != nil {
			t.Fatal(err)
		}
		l.Ack(id(i))
	}
	// Live: 10 records of 225 bytes; the bound is twice that plus four
	// segments, plus the active one and the one being written.
	waitFor(t, "the files to shrink", func() bool { return flushed(l) && segFiles(t, dir) <= 7 })
	if s := l.Stats(); s.Compacted < 10 {
		t.Fatalf("compacted %d records, want the 10 pinned ones at least", s.Compacted)
	}
	l.Close()
	l = open(t, dir, WithSegmentSize(4096))
	defer l.Close()
	n := 0
	l.Replay(func(i ID, data []byte) error {
		n++
		if int(binary.BigEndian.Uint64(i[8:]))%2 != 1 || len(data) != 200 {
			t.Errorf("replayed %x (%d bytes)", i, len(data))
		}
		return nil
	})
	if n != len(pinned) {
		t.Fatalf("replayed %d, want %d", n, len(pinned))
	}
}

func TestBatchedLosesNothingOnClose(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, WithInterval(time.Hour))
	for i := range 100 {
		if err := l.Append(context.Background(), id(i), payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if s := l.Stats(); s.Syncs != 0 {
		t.Fatalf("batched mode fsynced %d times before its interval", s.Syncs)
	}
	l.Close()
	l = open(t, dir)
	defer l.Close()
	if got := replayAll(t, l); len(got) != 100 {
		t.Fatalf("replayed %d, want 100", len(got))
	}
}

// In batched mode a buffer past bigBuffer is written at once, without an
// fsync; the next tick fsyncs it even though nothing new was buffered.
func TestBatchedBigWriteIsSynced(t *testing.T) {
	l := open(t, t.TempDir(), WithInterval(20*time.Millisecond))
	defer l.Close()
	rec := make([]byte, 1000)
	for i := 0; ; i++ {
		if err := l.Append(context.Background(), id(i), rec); err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		n := len(l.buf)
		l.mu.Unlock()
		if n == 0 || n >= bigBuffer {
			break // handed to the flusher
		}
	}
	waitFor(t, "the big buffer written", func() bool { return l.Stats().Writes > 0 })
	waitFor(t, "the write fsynced", func() bool { return l.Stats().Syncs > 0 })
}

// BenchmarkFsync is the floor of the sync mode: one 64-byte append and
// fsync to a file in the temporary directory.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := make([]byte, 64)
	for b.Loop() {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendAck: one Append and one Ack of a 100-byte record, from
// one goroutine or from 64 (group commit).
func BenchmarkAppendAck(b *testing.B) {
	for _, bc := range []struct {
		name string
		par  int
		opts []Option
		size int
	}{
		{"sync/1", 1, nil, 100},
		{"sync/64", 64, nil, 100},
		{"batched-10ms/1", 1, []Option{WithInterval(10 * time.Millisecond)}, 100},
		{"sync/256/1MiB", 256, nil, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l, err := Open(b.TempDir(), bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, bc.size)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			if bc.par == 1 {
				i := 0
				for b.Loop() {
					i++
					if err := l.Append(context.Background(), id(i), data); err != nil {
						b.Fatal(err)
					}
					l.Ack(id(i))
				}
				s := l.Stats()
				b.ReportMetric(float64(s.Appends)/float64(max(s.Syncs, 1)), "appends/fsync")
				return
			}
			var next sync.Mutex
			n := 0
			b.SetParallelism(bc.par / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					next.Lock()
					n++
					i := n
					next.Unlock()
					if err := l.Append(context.Background(), id(i), data); err != nil {
						b.Error(err)
						return
					}
					l.Ack(id(i))
				}
			})
			s := l.Stats()
			b.ReportMetric(float64(s.Appends)/float64(max(s.Syncs, 1)), "appends/fsync")
		})
	}
}

// bigPayload is a payload of refMin bytes or more, which a sync Append
// writes from the caller's slice: its first bytes name n.
func bigPayload(n, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + n)
	}
	copy(b, payload(n))
	return b
}

// Large records (written from the caller's slice, between pieces of the
// buffer) come back whole across segments and reopenings, in both modes,
// with their acks; compaction copies them forward intact; a record torn
// inside its payload is skipped.
func TestLargeRecords(t *testing.T) {
	const size = 3 * refMin / 2
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"sync", []Option{WithSegmentSize(6 * size)}},
		{"batched", []Option{WithSegmentSize(6 * size), WithInterval(time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, tc.opts...)
			appendOne := func(i int) {
				data := payload(i) // small and large records interleaved
				if i%3 != 2 {
					data = bigPayload(i, size+i)
				}
				if err := l.Append(context.Background(), id(i), data); err != nil {
					t.Error(err)
				}
			}
			appendOne(0) // first in the oldest segment
			var wg sync.WaitGroup
			for i := 1; i < 24; i++ {
				wg.Go(func() { appendOne(i) })
			}
			wg.Wait()
			// Keep 0, alone in its segment, which is then compacted, and a
			// few records of the later ones.
			l.mu.Lock()
			first, _ := l.index.get(id(0))
			var keep []int
			for i := range 24 {
				if e, _ := l.index.get(id(i)); i == 0 || e.seg != first.seg && i%4 == 1 {
					keep = append(keep, i)
				}
			}
			l.mu.Unlock()
			for i := range 24 {
				if !slices.Contains(keep, i) {
					l.Ack(id(i))
				}
			}
			waitFor(t, "a record copied forward", func() bool { return l.Stats().Compacted > 0 })
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			check := func(l *Log, want ...int) {
				t.Helper()
				got := map[int]bool{}
				if err := l.Replay(func(i ID, data []byte) error {
					n := int(binary.BigEndian.Uint64(i[8:]))
					w := payload(n)
					if n%3 != 2 {
						w = bigPayload(n, size+n)
					}
					if !slices.Equal(data, w) {
						t.Errorf("record %d: %d bytes differ from the %d appended", n, len(data), len(w))
					}
					got[n] = true
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				for _, n := range want {
					if !got[n] {
						t.Errorf("record %d not replayed", n)
					}
				}
				if len(got) != len(want) {
					t.Errorf("replayed %d records, want %d", len(got), len(want))
				}
			}
			l = open(t, dir, tc.opts...)
			check(l, keep...)
			if s := l.Stats(); s.Corrupt != 0 {
				t.Errorf("Corrupt = %d after a clean close", s.Corrupt)
			}
			l.Ack(id(0))
			if err := l.Append(context.Background(), id(100), bigPayload(100, size+100)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			// Tear the newest segment inside its last record (103, or one
			// copied forward after it): one record is lost, the others
			// come back intact.
			l = open(t, dir, tc.opts...)
			if err := l.Replay(func(ID, []byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if err := l.Append(context.Background(), id(103), bigPayload(103, size+103)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			last := lastSegment(t, dir)
			st, err := os.Stat(last)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(last, st.Size()-size/2); err != nil {
				t.Fatal(err)
			}
			l = open(t, dir, tc.opts...)
			defer l.Close()
			got := 0
			if err := l.Replay(func(i ID, data []byte) error {
				n := int(binary.BigEndian.Uint64(i[8:]))
				w := payload(n)
				if n%3 != 2 {
					w = bigPayload(n, size+n)
				}
				if !slices.Equal(data, w) {
					t.Errorf("record %d differs after tearing", n)
				}
				got++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if s := l.Stats(); s.Corrupt != 1 || got != len(keep) {
				t.Errorf("after tearing: Corrupt = %d, replayed %d; want 1 and %d (of %v but 0, 100 and 103)", s.Corrupt, got, len(keep), keep)
			}
		})
	}
}

// A sync Append whose context ends while it waits gives its payload back:
// the caller may reuse the slice at once, and what reaches the disk is
// what was appended (a record written from the changed slice would fail
// its checksum on Open).
func TestLargeAppendCanceledReleasesPayload(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	const n = 40
	canceled := 0
	for i := range n {
		data := bigPayload(i, refMin)
		err := l.Append(ctx, id(i), data)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			canceled++
		}
		for j := range data {
			data[j] = 0xff // the caller reuses its buffer
		}
	}
	if canceled == 0 {
		t.Log("no Append gave up (each found its fsync done first)")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir)
	defer l.Close()
	got := 0
	if err := l.Replay(func(i ID, data []byte) error {
		k := int(binary.BigEndian.Uint64(i[8:]))
		if !slices.Equal(data, bigPayload(k, refMin)) {
			t.Errorf("record %d changed on disk", k)
		}
		got++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); got != n || s.Corrupt != 0 {
		t.Errorf("replayed %d of %d, Corrupt = %d (%d Appends gave up)", got, n, s.Corrupt, canceled)
	}
}
