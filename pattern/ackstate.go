package pattern

import (
	"fmt"
	"slices"
)

// jobState is where a job (an item in an acked Pusher's custody) is in its
// life. Its state says which of the Pusher's structures hold it:
//
//	new ──► (waiting) ──► queued ──► sent ──► (started) ──► settled
//	                        ▲         │            │
//	                        └─────────┴────────────┘ redelivered
//
//	new       made by push or taken back from the outbox, not yet placed
//	waiting   a keyed job behind another job of its key, chained through
//	          item.knext, on no list
//	queued    in a.levels at its priority, or (keyed) in its key owner's
//	          keyQueue or the homeless queue (item.ln[qlinks])
//	sent      in flight at item.peer: on a.flight (item.ln[flinks]) and
//	          the peer's held list (item.ln[hlinks])
//	started   sent, and the holder reported its handler's start (which a
//	          flagged envelope asks for)
//	limbo     in a.limbo until item.deadline, then dead (see limboWait)
//	settled   acked or dead, out of custody; a keyed job settled while
//	          waiting stays in its key's chain, skipped when its turn comes
//
// The moves (jobMoves), and the functions that make them:
//
//	new → waiting            pushKeyedLocked: its key has a job ahead of it
//	new → queued             enqueue: pushed (or replayed) with no credit free
//	new → sent               sendNowUnlock: pushed with a puller's credit free
//	waiting → queued         keySettled: the job ahead of it settled
//	queued → sent            assign
//	sent → started           startedOn: the holder's handler started
//	sent, started → queued   retry, retryLost, undo: nack, ack timeout,
//	                         connection lost, send refused
//	sent, started → limbo    retryLost: connection lost at its last delivery
//	queued, sent, started    startedOn: the late start report of a lost
//	  → limbo                delivery brought it to WithMaxDeliveries
//	any but new → settled    forget: acked; kill: dead
//
// takeOut is the one place a job leaves the structures of its state, and
// setState the one place its state changes; zpeerdebug builds check every
// move against jobMoves.
type jobState uint8

const (
	jobNew jobState = iota
	jobWaiting
	jobQueued
	jobSent
	jobStarted
	jobLimbo
	jobSettled
)

var jobStateNames = [...]string{"new", "waiting", "queued", "sent", "started", "limbo", "settled"}

func (s jobState) String() string {
	if int(s) < len(jobStateNames) {
		return jobStateNames[s]
	}
	return fmt.Sprintf("jobState(%d)", uint8(s))
}

// inFlight reports whether a delivery of the job is outstanding at its
// current holder (item.peer).
func (s jobState) inFlight() bool { return s == jobSent || s == jobStarted }

// jobMoves lists, per state, the states a job may move to.
var jobMoves = [...]uint8{
	jobNew:     1<<jobWaiting | 1<<jobQueued | 1<<jobSent,
	jobWaiting: 1<<jobQueued | 1<<jobSettled,
	jobQueued:  1<<jobSent | 1<<jobLimbo | 1<<jobSettled,
	jobSent:    1<<jobStarted | 1<<jobQueued | 1<<jobLimbo | 1<<jobSettled,
	jobStarted: 1<<jobQueued | 1<<jobLimbo | 1<<jobSettled,
	jobLimbo:   1 << jobSettled,
	jobSettled: 0,
}

// setState moves it to state to; the caller has taken it out of its
// state's structures (takeOut) and places it in those of to. a.mu is
// held.
func (it *item) setState(to jobState) {
	if debugChecks && jobMoves[it.state]&(1<<to) == 0 {
		panic(fmt.Sprintf("pattern: acked job %x: illegal move %v -> %v", it.id, it.state, to))
	}
	it.state = to
}

// takeOut removes it from the structures its state puts it on, before it
// moves to another state: a queue, the in-flight lists, or limbo. An
// in-flight job's holder gets its credit back unless keep, when it stays
// among the job's holders (item.stale) until it answers (an ack timeout, or
// another holder settled it). a.mu is held.
func (a *ackPusher[T]) takeOut(it *item, keep bool) {
	switch it.state {
	case jobQueued:
		a.dequeue(it)
	case jobSent, jobStarted:
		p := it.peer
		a.flight.remove(it)
		p.held.remove(it)
		if keep {
			it.stale = append(it.stale, p)
		} else {
			p.release()
		}
		it.peer = nil
	case jobLimbo:
		if i := slices.Index(a.limbo, it); i >= 0 {
			a.limbo = slices.Delete(a.limbo, i, i+1)
		}
	}
}
