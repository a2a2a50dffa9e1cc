package pattern

import "github.com/zpeer/zpeer/internal/asyncq"

// notifier runs user callbacks (WithOnDead) in order on a goroutine of its
// own, so that no internal goroutine ever waits for user code. It is
// socket's event-handler queue (internal/asyncq) without a bound:
// callbacks are rare events (dead messages), not a data path.
type notifier struct{ q *asyncq.Queue[func()] }

func newNotifier() *notifier {
	return &notifier{q: asyncq.New(func(f func()) { f() }, 0, nil)}
}

// post queues f; after close it is dropped.
func (n *notifier) post(f func()) { n.q.Post(f) }

// close runs what is queued and waits for it. It is idempotent.
func (n *notifier) close() { n.q.Close() }
