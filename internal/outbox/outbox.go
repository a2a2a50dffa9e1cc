package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors, usable with errors.Is.
var (
	// ErrClosed is returned by Append on a closed Log.
	ErrClosed = errors.New("outbox: closed")
	// ErrFull is returned by Append when the Log holds its maximum of
	// messages or bytes and WithFailWhenFull is set, or the context ended
	// while Append waited for room.
	ErrFull = errors.New("outbox: full")
	// ErrTooLarge is returned by Append for a record larger than the
	// Log's byte bound.
	ErrTooLarge = errors.New("outbox: record too large")
	// ErrDuplicate is returned by Append for an id the Log already holds.
	ErrDuplicate = errors.New("outbox: duplicate id")
	// ErrLocked is returned by Open when another Log has the directory.
	ErrLocked = errors.New("outbox: directory in use")
	// ErrIO wraps a failed write or fsync. It is sticky: after a failed
	// fsync the kernel may have dropped the data, so every later Append
	// fails too.
	ErrIO = errors.New("outbox: i/o error")
	// ErrOption wraps an invalid option.
	ErrOption = errors.New("outbox: bad option")
)

// ID names a record.
type ID [16]byte

// Options are the Log's settings; see the With functions for defaults.
type Options struct {
	Interval     time.Duration
	MaxMessages  int
	MaxBytes     int64
	SegmentSize  int64
	FailWhenFull bool
}

// Option sets an Option.
type Option func(*Options) error

// WithInterval selects the batched mode with fsync at most every d; 0
// (the default) is the sync mode.
func WithInterval(d time.Duration) Option {
	return func(o *Options) error {
		if d < 0 {
			return fmt.Errorf("%w: WithInterval(%v): must not be negative", ErrOption, d)
		}
		o.Interval = d
		return nil
	}
}

// WithMaxMessages bounds how many records the Log holds (default 65536).
func WithMaxMessages(n int) Option {
	return func(o *Options) error {
		if n < 1 {
			return fmt.Errorf("%w: WithMaxMessages(%d): must be at least 1", ErrOption, n)
		}
		o.MaxMessages = n
		return nil
	}
}

// WithMaxBytes bounds the payload bytes of the records the Log holds
// (default 256 MiB). The files on disk hold about twice the live records
// plus six segments at most (see package doc: compaction).
func WithMaxBytes(n int64) Option {
	return func(o *Options) error {
		if n < 1 {
			return fmt.Errorf("%w: WithMaxBytes(%d): must be at least 1", ErrOption, n)
		}
		o.MaxBytes = n
		return nil
	}
}

// WithSegmentSize sets the size at which a segment file is sealed and a
// new one started (default 16 MiB).
func WithSegmentSize(n int64) Option {
	return func(o *Options) error {
		if n < 1024 {
			return fmt.Errorf("%w: WithSegmentSize(%d): must be at least 1024", ErrOption, n)
		}
		o.SegmentSize = n
		return nil
	}
}

// WithFailWhenFull makes Append fail at once with ErrFull when the Log is
// full, instead of waiting for room until its context ends.
func WithFailWhenFull() Option {
	return func(o *Options) error {
		o.FailWhenFull = true
		return nil
	}
}

// Stats are the Log's counters.
type Stats struct {
	Messages     int   // records held
	Bytes        int64 // their payload bytes
	Segments     int   // segment files
	Appends      uint64
	Acks         uint64
	Writes       uint64 // write calls (one per batch and segment)
	Syncs        uint64 // fsyncs
	Compacted    uint64 // records copied forward out of a sealed segment
	Recovered    int    // records found on Open
	Corrupt      int    // torn or corrupt records skipped on Open
	CorruptBytes int64  // bytes skipped with them
}

const (
	magic      = "zpeerob1" // first bytes of every segment file
	hdrLen     = 8          // length (4) + crc32c (4)
	bodyMin    = 1 + len(ID{})
	recPut     = 1
	recAck     = 2
	maxRecord  = 1 << 30
	bigBuffer  = 256 << 10 // batched mode: write (without fsync) beyond this
	syncTick   = 200 * time.Millisecond
	segSuffix  = ".seg"
	lockName   = "LOCK"
	compactMin = 4        // compact a sealed segment whose live bytes are under 1/compactMin of it
	refMin     = 16 << 10 // a payload this large is written from its own slice, not copied into the buffer
	diskSlack  = 4        // segments on disk beyond twice the live bytes before the oldest is compacted
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type entry struct {
	seg  uint64
	size int64
}

type segInfo struct {
	live      int
	liveBytes int64
	size      int64 // bytes appended (written or buffered)
	file      *os.File
}

// chunk is what a segment has to write: its parts in order, the pieces of
// its buffer between large payloads and those payloads' own slices.
type chunk struct {
	seg   uint64
	parts [][]byte
}

// batch is what one flush makes durable.
type batch struct {
	written chan struct{} // closed once the flush no longer reads the batch's payloads
	done    chan struct{}
	err     error
}

func newBatch() *batch { return &batch{written: make(chan struct{}), done: make(chan struct{})} }

type recovered struct {
	id   ID
	data []byte
}

// Log is a durable outbox in one directory. It is safe for concurrent use.
type Log struct {
	dir  string
	o    Options
	lock *os.File

	mu        sync.Mutex
	index     *index
	loading   bool // Open is reading the segments
	segs      map[uint64]*segInfo
	order     []uint64 // segment numbers on disk or buffered, oldest first
	active    uint64
	buf       []byte   // the active segment's framed records since the last flush
	cut       int      // l.buf[:cut] is in parts
	parts     [][]byte // the active segment's parts before l.buf[cut:]
	pend      int      // bytes appended since the last flush
	spare     []byte
	chunks    []chunk  // bytes of segments sealed since the last flush
	dirty     []uint64 // segments written since the last fsync (batched mode)
	cur       *batch
	liveBytes int64
	waiting   bool // an Append waits for cur
	spaceCh   chan struct{}
	closed    bool
	err       error
	recovered []recovered

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	// The remover deletes the files of collected segments off the
	// flusher's path (unlinking a large file takes a while).
	gone   []uint64 // under mu
	rmKick chan struct{}
	rmStop chan struct{}
	rmWG   sync.WaitGroup

	appends, acks, writes, syncs, compacted atomic.Uint64
	nrecovered, corrupt                     int
	corruptBytes                            int64
}

func segName(n uint64) string { return fmt.Sprintf("%016x%s", n, segSuffix) }

// Open opens (creating it if needed) the Log in dir, reading what an
// earlier Log left there: Replay hands back the records not acknowledged.
func Open(dir string, opts ...Option) (*Log, error) {
	o := Options{MaxMessages: 65536, MaxBytes: 256 << 20, SegmentSize: 16 << 20}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, o: o, lock: lock, index: newIndex(o.MaxMessages), loading: true, segs: make(map[uint64]*segInfo),
		cur: newBatch(), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		rmKick: make(chan struct{}, 1), rmStop: make(chan struct{})}
	if err := l.load(); err != nil {
		lock.Close()
		return nil, err
	}
	l.loading = false
	l.active = 1
	if n := len(l.order); n > 0 {
		l.active = l.order[n-1] + 1
	}
	l.segs[l.active] = &segInfo{size: int64(len(magic))}
	l.order = append(l.order, l.active)
	l.wg.Add(1)
	go l.flusher()
	l.rmWG.Add(1)
	go l.remover()
	return l, nil
}

// load reads every segment in dir, oldest first.
func (l *Log) load() error {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var nums []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), segSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil || n == 0 {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	pos := map[ID]int{} // index in l.recovered
	for i, n := range nums {
		path := filepath.Join(l.dir, segName(n))
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		good := l.scan(n, data, pos)
		if good < int64(len(data)) {
			l.corrupt++
			l.corruptBytes += int64(len(data)) - good
			if i == len(nums)-1 {
				// The newest segment ends in a torn write: cut it off,
				// so that it is counted once.
				if err := os.Truncate(path, good); err != nil {
					return fmt.Errorf("outbox: %w", err)
				}
			}
		}
		s := l.segs[n]
		if s == nil {
			s = &segInfo{}
			l.segs[n] = s
		}
		s.size = good
		l.order = append(l.order, n)
	}
	kept := l.recovered[:0]
	for _, r := range l.recovered {
		if _, ok := l.index.get(r.id); ok {
			kept = append(kept, r)
		}
	}
	clear(l.recovered[len(kept):])
	l.recovered = kept
	l.nrecovered = len(kept)
	return nil
}

// scan applies the records of segment n and returns the length of its
// valid prefix.
func (l *Log) scan(n uint64, data []byte, pos map[ID]int) int64 {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return 0 // empty, or not a segment: all of it is skipped
	}
	off := len(magic)
	for off < len(data) {
		if len(data)-off < hdrLen {
			break
		}
		size := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if size < bodyMin || size > maxRecord || size > len(data)-off-hdrLen {
			break
		}
		body := data[off+hdrLen : off+hdrLen+size]
		if crc32.Checksum(body, crcTable) != sum {
			break
		}
		id := ID(body[1:bodyMin])
		switch body[0] {
		case recPut:
			payload := body[bodyMin:]
			if old, ok := l.index.get(id); ok {
				l.drop(old) // copied forward: the newer copy counts
			}
			p, ok := pos[id]
			if !ok {
				p = len(l.recovered)
				pos[id] = p
				l.recovered = append(l.recovered, recovered{id: id})
			}
			l.recovered[p].data = slices.Clone(payload)
			l.add(id, n, int64(len(payload)))
		case recAck:
			if e, ok := l.index.del(id); ok {
				l.drop(e)
				l.recovered[pos[id]].data = nil
			}
		default:
			return int64(off)
		}
		off += hdrLen + size
	}
	return int64(off)
}

// add indexes a live record of segment n. l.mu is held (or Open runs).
func (l *Log) add(id ID, n uint64, size int64) {
	s := l.segs[n]
	if s == nil {
		s = &segInfo{}
		l.segs[n] = s
	}
	s.live++
	s.liveBytes += size
	l.liveBytes += size
	if l.loading {
		l.index.putOver(id, entry{seg: n, size: size})
	} else {
		l.index.put(id, entry{seg: n, size: size})
	}
}

// drop forgets e's share of its segment. l.mu is held.
func (l *Log) drop(e entry) {
	s := l.segs[e.seg]
	s.live--
	s.liveBytes -= e.size
	l.liveBytes -= e.size
}

// Replay calls fn with each record that a previous Log left unacknowledged,
// in append order (a record that compaction copied forward comes where it
// was copied), then forgets them (they stay in the Log until Ack). fn
// owns data. Replay stops at fn's first error and returns it.
func (l *Log) Replay(fn func(id ID, data []byte) error) error {
	l.mu.Lock()
	rs := l.recovered
	l.recovered = nil
	l.mu.Unlock()
	for i, r := range rs {
		if err := fn(r.id, r.data); err != nil {
			return err
		}
		rs[i] = recovered{}
	}
	return nil
}

// recordCRC is the checksum of a record's body.
func recordCRC(kind byte, id ID, payload []byte) uint32 {
	var head [bodyMin]byte
	head[0] = kind
	copy(head[1:], id[:])
	return crc32.Update(crc32.Checksum(head[:], crcTable), crcTable, payload)
}

// appendRecord frames a record, whose body's checksum is sum, into the
// active segment's buffer, sealing the segment first when the record
// would take it over its size. A payload of refMin bytes or more is not
// copied if ref: the flush writes it from payload itself, which must not
// change until then. l.mu is held.
func (l *Log) appendRecord(kind byte, id ID, payload []byte, sum uint32, ref bool) {
	size := hdrLen + bodyMin + len(payload)
	s := l.segs[l.active]
	if s.size > int64(len(magic)) && s.size+int64(size) > l.o.SegmentSize {
		l.chunks = append(l.chunks, chunk{seg: l.active, parts: l.activeParts()})
		l.buf, l.cut, l.parts = nil, 0, nil
		l.active++
		s = &segInfo{size: int64(len(magic))}
		l.segs[l.active] = s
		l.order = append(l.order, l.active)
	}
	l.buf = binary.LittleEndian.AppendUint32(l.buf, uint32(bodyMin+len(payload)))
	l.buf = binary.LittleEndian.AppendUint32(l.buf, sum)
	l.buf = append(l.buf, kind)
	l.buf = append(l.buf, id[:]...)
	if ref && len(payload) >= refMin {
		l.parts = append(l.parts, l.buf[l.cut:len(l.buf):len(l.buf)], payload)
		l.cut = len(l.buf)
	} else {
		l.buf = append(l.buf, payload...)
	}
	s.size += int64(size)
	l.pend += size
}

// activeParts returns the active segment's parts. l.mu is held.
func (l *Log) activeParts() [][]byte {
	if len(l.buf) > l.cut {
		return append(l.parts, l.buf[l.cut:])
	}
	return l.parts
}

func (l *Log) full(size int64) bool {
	if l.index.len() == 0 {
		return false
	}
	return l.index.len() >= l.o.MaxMessages || l.liveBytes+size > l.o.MaxBytes
}

// Append adds a record. In sync mode it returns once the record is on
// disk (written and fsynced); in batched mode once it is buffered. While
// the Log is full it waits for room until ctx ends (ErrFull wrapping ctx's
// error), or fails at once with WithFailWhenFull. If ctx ends while a sync
// Append waits for its fsync, it returns ctx's error and the record may or
// may not be durable: call Ack to withdraw it.
//
// The Log does not keep data once Append returns. A sync Append writes a
// large payload (16 KiB or more) from data itself rather than copying it;
// one that gives up on its context replaces it with a copy, or, if the
// write already started, waits for that write (not for the fsync).
func (l *Log) Append(ctx context.Context, id ID, data []byte) error {
	size := int64(len(data))
	if size > l.o.MaxBytes || size > maxRecord-int64(bodyMin) {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	sum := recordCRC(recPut, id, data) // outside l.mu: concurrent Appends checksum in parallel
	l.mu.Lock()
	for l.full(size) && !l.closed {
		if l.o.FailWhenFull {
			l.mu.Unlock()
			return ErrFull
		}
		if l.spaceCh == nil {
			l.spaceCh = make(chan struct{})
		}
		ch := l.spaceCh
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrFull, ctx.Err())
		}
		l.mu.Lock()
	}
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	if _, dup := l.index.get(id); dup {
		l.mu.Unlock()
		return ErrDuplicate
	}
	sync := l.o.Interval == 0
	l.appendRecord(recPut, id, data, sum, sync)
	l.add(id, l.active, size)
	b := l.cur
	if sync {
		l.waiting = true
	}
	big := l.pend >= bigBuffer
	l.mu.Unlock()
	l.appends.Add(1)
	if !sync {
		if big {
			l.wake()
		}
		return nil
	}
	l.wake()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		l.release(b, data)
		return ctx.Err()
	}
}

// release makes sure that the flush of batch b no longer reads data, which
// a sync Append that gives up passes back to its caller: a copy replaces
// it if b is still being buffered, else release waits until b is written.
func (l *Log) release(b *batch, data []byte) {
	if len(data) < refMin {
		return // copied
	}
	l.mu.Lock()
	if l.cur == b {
		swap := func(parts [][]byte) {
			for i, p := range parts {
				if len(p) == len(data) && &p[0] == &data[0] {
					parts[i] = slices.Clone(data)
				}
			}
		}
		swap(l.parts)
		for _, c := range l.chunks {
			swap(c.parts)
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	<-b.written
}

// Ack removes a record: it will not be replayed. Acking an id the Log
// does not hold does nothing. Ack does not wait for the disk.
func (l *Log) Ack(id ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.index.del(id)
	if !ok {
		return
	}
	l.drop(e)
	if !l.closed {
		l.appendRecord(recAck, id, nil, recordCRC(recAck, id, nil), false)
	}
	l.acks.Add(1)
	if l.spaceCh != nil {
		close(l.spaceCh)
		l.spaceCh = nil
	}
}

func (l *Log) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Stats returns the Log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := Stats{Messages: l.index.len(), Bytes: l.liveBytes, Segments: len(l.order),
		Recovered: l.nrecovered, Corrupt: l.corrupt, CorruptBytes: l.corruptBytes}
	l.mu.Unlock()
	s.Appends, s.Acks, s.Writes = l.appends.Load(), l.acks.Load(), l.writes.Load()
	s.Syncs, s.Compacted = l.syncs.Load(), l.compacted.Load()
	return s
}

// Close writes and fsyncs what is buffered (acks included), closes the
// files and releases the directory. Appends waiting for room fail with
// ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	if l.spaceCh != nil {
		close(l.spaceCh)
		l.spaceCh = nil
	}
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
	close(l.rmStop)
	l.rmWG.Wait()
	l.mu.Lock()
	err := l.err
	for _, s := range l.segs {
		if s.file != nil {
			s.file.Close()
			s.file = nil
		}
	}
	l.mu.Unlock()
	l.lock.Close()
	return err
}

// flusher writes what Append and Ack buffer: at once in sync mode while an
// Append waits, every interval in batched mode, and every syncTick for
// acks alone.
func (l *Log) flusher() {
	defer l.wg.Done()
	tick := l.o.Interval
	if tick == 0 {
		tick = syncTick
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-l.kick:
			// Sync mode: the waiting Appends. Batched: a big buffer,
			// written now and fsynced at the next tick.
			l.flush(l.o.Interval == 0)
		case <-t.C:
			l.flush(true)
		case <-l.stop:
			l.flush(true)
			return
		}
	}
}

// flush writes the buffered records, fsyncs them if sync, completes the
// waiting Appends' batch, deletes segments whose records are all acked and
// copies forward a mostly-acked one.
func (l *Log) flush(sync bool) {
	l.mu.Lock()
	if l.pend == 0 && len(l.chunks) == 0 && !l.waiting && (!sync || len(l.dirty) == 0) {
		l.mu.Unlock()
		if sync {
			l.collect()
		}
		return
	}
	chunks := append(l.chunks, chunk{seg: l.active, parts: l.activeParts()})
	buf := l.buf
	l.chunks = nil
	l.buf, l.cut, l.parts, l.pend = l.spare[:0], 0, nil, 0
	l.spare = nil
	active := l.active
	b := l.cur
	if sync {
		l.cur = newBatch()
		l.waiting = false
	}
	infos := make([]*segInfo, len(chunks))
	for i, c := range chunks {
		infos[i] = l.segs[c.seg]
	}
	// What to fsync: every segment written since the last fsync.
	var syncSegs []uint64
	if sync {
		syncSegs = l.dirty
		l.dirty = nil
		for _, c := range chunks {
			if !slices.Contains(syncSegs, c.seg) {
				syncSegs = append(syncSegs, c.seg)
			}
		}
	} else {
		for _, c := range chunks {
			if !slices.Contains(l.dirty, c.seg) {
				l.dirty = append(l.dirty, c.seg)
			}
		}
	}
	syncInfos := make([]*segInfo, 0, len(syncSegs))
	for _, n := range syncSegs {
		if s := l.segs[n]; s != nil {
			syncInfos = append(syncInfos, s)
		}
	}
	prevErr := l.err
	l.mu.Unlock()

	// Only this goroutine (or Close, once it stopped) sets or reads a
	// segInfo's file: creating one, which fsyncs the directory, does not
	// hold up Append and Ack.
	var err error
	if prevErr == nil {
		err = l.openFiles(chunks, infos)
	}
	var syncFiles []*os.File
	for _, s := range syncInfos {
		if s.file != nil {
			syncFiles = append(syncFiles, s.file)
		}
	}
	if err == nil && prevErr == nil {
	write:
		for i, c := range chunks {
			for _, p := range c.parts {
				if len(p) == 0 {
					continue
				}
				l.writes.Add(1)
				if _, werr := infos[i].file.Write(p); werr != nil {
					err = werr
					break write
				}
			}
		}
	}
	if sync {
		close(b.written)
	}
	if err == nil && prevErr == nil {
		err = l.syncFiles(syncFiles)
	}

	l.mu.Lock()
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("%w: %w", ErrIO, err)
	}
	if prevErr == nil && l.err != nil {
		prevErr = l.err
	}
	for _, n := range syncSegs {
		if n != active {
			if s := l.segs[n]; s != nil && s.file != nil {
				s.file.Close() // sealed, written and fsynced
				s.file = nil
			}
		}
	}
	if cap(buf) <= 64*bigBuffer { // keep it (it grows while an fsync runs) unless huge
		l.spare = buf[:0]
	}
	l.mu.Unlock()
	if sync {
		b.err = prevErr
		close(b.done)
		l.collect()
	}
}

// syncFiles fsyncs files, at the same time when there are several (a
// batch of large records spans segments): the disk then flushes them
// together rather than one after the other.
func (l *Log) syncFiles(files []*os.File) error {
	l.syncs.Add(uint64(len(files)))
	switch len(files) {
	case 0:
		return nil
	case 1:
		return files[0].Sync()
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files[1:] {
		wg.Go(func() { errs[i+1] = f.Sync() })
	}
	errs[0] = files[0].Sync()
	wg.Wait()
	return errors.Join(errs...)
}

// openFiles opens the files of the chunks' segments (infos) that are not
// open, creating them with their magic, then fsyncs the directory once if
// it created any. It runs on the flusher, without l.mu.
func (l *Log) openFiles(chunks []chunk, infos []*segInfo) error {
	created := false
	for i, c := range chunks {
		s := infos[i]
		if s.file != nil {
			continue
		}
		path := filepath.Join(l.dir, segName(c.seg))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil && st.Size() == 0 {
			_, err = f.Write([]byte(magic))
			created = true
		}
		if err != nil {
			f.Close()
			return err
		}
		s.file = f
	}
	if created {
		return syncDir(l.dir)
	}
	return nil
}

// collect deletes the oldest segments while every record in them is
// acked, and copies forward the live records of the oldest sealed segment
// when they are few. It runs after an fsync, so a copy is durable before
// its original goes.
func (l *Log) collect() {
	l.mu.Lock()
	var gone []uint64
	for len(l.order) > 1 {
		n := l.order[0]
		s := l.segs[n]
		if n == l.active || s.live > 0 || l.pending(n) {
			break
		}
		gone = append(gone, n)
		if s.file != nil {
			s.file.Close()
		}
		delete(l.segs, n)
		l.order = l.order[1:]
	}
	var compact uint64
	if len(l.order) > 2 && !l.closed {
		n := l.order[0]
		s := l.segs[n]
		var disk int64
		for _, m := range l.order {
			disk += l.segs[m].size
		}
		// Copy the oldest segment's live records forward when they are
		// few, or when the files have grown past twice what is live (the
		// oldest pins every later segment, however empty).
		sparse := s.liveBytes*compactMin < s.size
		big := disk > 2*(l.liveBytes+int64(l.index.len()*(hdrLen+bodyMin)))+diskSlack*l.o.SegmentSize
		if s.live > 0 && (sparse || big) && !l.pending(n) {
			compact = n
		}
	}
	l.gone = append(l.gone, gone...)
	l.mu.Unlock()
	if len(gone) > 0 {
		select {
		case l.rmKick <- struct{}{}:
		default:
		}
	}
	if compact != 0 {
		l.copyForward(compact)
	}
}

// remover deletes the files of the segments collect let go, until Close.
// A file not yet deleted when the process ends holds only acked records
// (their acks are in later segments), as one whose deletion did not reach
// the disk: Open reads it and drops it again.
func (l *Log) remover() {
	defer l.rmWG.Done()
	for {
		var stop bool
		select {
		case <-l.rmKick:
		case <-l.rmStop:
			stop = true
		}
		l.mu.Lock()
		gone := l.gone
		l.gone = nil
		l.mu.Unlock()
		for _, n := range gone {
			os.Remove(filepath.Join(l.dir, segName(n)))
		}
		if stop {
			return
		}
	}
}

// pending reports whether segment n has bytes not yet written. l.mu is
// held.
func (l *Log) pending(n uint64) bool {
	for _, c := range l.chunks {
		if c.seg == n {
			return true
		}
	}
	return false
}

// copyForward appends the live records of sealed segment n again; once
// they are flushed, n holds none and collect deletes it.
func (l *Log) copyForward(n uint64) {
	data, err := os.ReadFile(filepath.Join(l.dir, segName(n)))
	if err != nil || len(data) < len(magic) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	off := len(magic)
	moved := 0
	for len(data)-off >= hdrLen {
		size := int(binary.LittleEndian.Uint32(data[off:]))
		if size < bodyMin || size > len(data)-off-hdrLen {
			break
		}
		body := data[off+hdrLen : off+hdrLen+size]
		off += hdrLen + size
		if body[0] != recPut {
			continue
		}
		id := ID(body[1:bodyMin])
		e, ok := l.index.get(id)
		if !ok || e.seg != n {
			continue
		}
		l.drop(e)
		// data is this function's: the flush may write from it.
		l.appendRecord(recPut, id, body[bodyMin:], binary.LittleEndian.Uint32(data[off-hdrLen-size+4:]), true)
		l.add(id, l.active, e.size)
		moved++
	}
	if moved > 0 {
		l.compacted.Add(uint64(moved))
		l.wake()
	}
}
