package discovery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what the process's mDNS stack (StackStats), an Announcer
// (Announcer.Stats) or a Watcher (Watcher.Stats) did since it started.
// Counters only grow; a field that does not apply stays zero.
type Stats struct {
	// PacketsIn: mDNS packets read (stack); queries for this Announcer's
	// records (Announcer); responses, and queries for its service, handed
	// to this Watcher (Watcher).
	PacketsIn uint64
	// PacketsOut: packets sent: announcements, answers and goodbyes
	// (Announcer), queries (Watcher).
	PacketsOut uint64
	// SendErrors: packets the network refused to send. Each is logged at
	// warning level (at most one line per second per kind).
	SendErrors uint64
	// Malformed: packets that did not parse (stack only).
	Malformed uint64
	// QueueDrops: packets (Watcher) or queries (Announcer) dropped because
	// the bounded queue between the stack's reader and the user was full;
	// the stack counts the drops of all its users. Logged at warning level.
	QueueDrops uint64
	// EventsCoalesced: events merged into an event of the same peer that
	// was still waiting in a subscriber's queue (Watcher; see Events).
	EventsCoalesced uint64
	// EventDrops: events dropped because a subscriber's queue held
	// MaxQueuedEvents events (Watcher). Logged at warning level.
	EventDrops uint64
	// PeersUp and PeersDown: PeerUp and PeerDown events decided (Watcher),
	// whether or not anybody read them.
	PeersUp, PeersDown uint64
	// PeersIgnored: announcements of new peers ignored because the
	// Watcher already tracked MaxPeers peers. Logged at warning level.
	PeersIgnored uint64
	// Sockets: mDNS sockets open now (stack only): one per interface that
	// some Announcer or Watcher of the process uses.
	Sockets int
}

// WithLogger sets the logger of an Announcer or a Watcher (both). It logs
// at warning level what it cannot do: packets it failed to send, packets,
// queries and events it dropped because a bounded queue was full, and
// peers it ignored beyond MaxPeers; at most one line per second for each
// kind, with the number suppressed since. Stats counts all of them. A nil
// logger, like no WithLogger at all, discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// counters are an Announcer's or a Watcher's Stats, updated atomically.
type counters struct {
	packetsIn, packetsOut, sendErrors, queueDrops atomic.Uint64
	coalesced, eventDrops                         atomic.Uint64
	peersUp, peersDown, peersIgnored              atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{
		PacketsIn:       c.packetsIn.Load(),
		PacketsOut:      c.packetsOut.Load(),
		SendErrors:      c.sendErrors.Load(),
		QueueDrops:      c.queueDrops.Load(),
		EventsCoalesced: c.coalesced.Load(),
		EventDrops:      c.eventDrops.Load(),
		PeersUp:         c.peersUp.Load(),
		PeersDown:       c.peersDown.Load(),
		PeersIgnored:    c.peersIgnored.Load(),
	}
}

// warner logs warnings at most once per second per message, with the
// number of occurrences since the last line, so that a flood of drops or
// send errors cannot flood the log.
type warner struct {
	log *slog.Logger
	mu  sync.Mutex
	at  map[string]*warnState // guarded by mu; keys are the few constant messages
}

type warnState struct {
	last       time.Time
	suppressed int
}

const warnEvery = time.Second

func newWarner(l *slog.Logger) *warner {
	return &warner{log: l, at: make(map[string]*warnState)}
}

// warn logs msg with args unless msg was logged less than a second ago;
// then it only counts it. It reports whether it logged.
//
// Drops are counted where they happen (the stack's reader, or under a
// Watcher's lock) and logged later by the user's own goroutine (warnDrops),
// so that a slow log handler never holds up the reader or the lock.
func (w *warner) warn(msg string, args ...any) bool {
	if !w.log.Enabled(context.Background(), slog.LevelWarn) {
		return true
	}
	now := time.Now()
	w.mu.Lock()
	st := w.at[msg]
	if st == nil {
		st = &warnState{}
		w.at[msg] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < warnEvery {
		st.suppressed++
		w.mu.Unlock()
		return false
	}
	st.last = now
	n := st.suppressed
	st.suppressed = 0
	w.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	w.log.Warn(msg, args...)
	return true
}

// warnGrowth logs msg when counter has grown since *last, with the growth
// as "dropped" (or whatever key says), and moves *last on when it logged.
func (w *warner) warnGrowth(counter *atomic.Uint64, last *uint64, msg, key string, args ...any) {
	n := counter.Load()
	if n <= *last {
		return
	}
	if w.warn(msg, append(args, key, n-*last)...) {
		*last = n
	}
}
