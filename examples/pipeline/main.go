// Command pipeline is the ventilator / workers / sink pipeline of the ZeroMQ
// guide, acknowledged end to end so that nothing is lost when a worker dies.
//
// The ventilator hands out jobs with an acked Pusher: a job stays with it
// until a worker acknowledges it, and a worker that dies has its
// unacknowledged jobs redelivered to the others. A worker acknowledges a job
// only once the sink has confirmed its result (a request/reply), so a job
// whose worker dies before the result is safe goes round again. The sink
// keeps each job's first result: a result that arrives twice is counted, not
// doubled. The ventilator exits once every job is acknowledged; the sink,
// a service, runs until interrupted.
//
// Build it first, so that each role is a process of its own that kill
// reaches (under "go run", kill -9 hits the go command and leaves the
// program running):
//
//	go build -o pipeline ./examples/pipeline
//	./pipeline -role sink -bind tcp://127.0.0.1:5558 &
//	./pipeline -role ventilator -bind tcp://127.0.0.1:5557 &
//	./pipeline -role worker -name w1 -ventilator tcp://127.0.0.1:5557 -sink tcp://127.0.0.1:5558 &
//	./pipeline -role worker -name w2 -ventilator tcp://127.0.0.1:5557 -sink tcp://127.0.0.1:5558 &
//
// Each worker prints its process id ("w1 working for ... (pid 4242)").
// Workers come and go: start more, kill some (kill -9 4242); the sink still
// ends with every result, once. A job takes half a second by default
// (-cost), so 100 jobs keep two workers busy for several seconds: time
// enough to kill one in the middle of its work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

// Job is a unit of work; Result is what a worker makes of it.
type Job struct {
	ID   int
	Cost time.Duration // how long the work takes
}

type Result struct {
	JobID  int
	Worker string
}

func main() {
	var (
		role       = flag.String("role", "", "ventilator, worker or sink")
		bind       = flag.String("bind", "tcp://127.0.0.1:0", "ventilator and sink: endpoint to listen on")
		ventilator = flag.String("ventilator", "", "worker: the ventilator's endpoint")
		sink       = flag.String("sink", "", "worker: the sink's endpoint")
		jobs       = flag.Int("jobs", 100, "ventilator and sink: number of jobs")
		cost       = flag.Duration("cost", 500*time.Millisecond, "ventilator: work per job, long enough to kill a worker in the middle")
		name       = flag.String("name", fmt.Sprintf("worker-%d", os.Getpid()), "worker: its name")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("pipeline: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "ventilator":
		err = runVentilator(ctx, *bind, *jobs, *cost)
	case "worker":
		if *ventilator == "" || *sink == "" {
			log.Fatal("a worker needs -ventilator and -sink")
		}
		err = runWorker(ctx, *name, *ventilator, *sink)
	case "sink":
		err = runSink(ctx, *bind, *jobs)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// runVentilator pushes the jobs and waits until every one is acknowledged.
func runVentilator(ctx context.Context, bind string, jobs int, cost time.Duration) error {
	push, err := pattern.NewPusher[Job](pattern.WithAck(), pattern.WithBind(bind),
		pattern.WithAckTimeout(5*time.Second), // a job held longer than this goes to another worker
		pattern.WithName("ventilator"))
	if err != nil {
		return err
	}
	defer push.Close()
	fmt.Printf("ventilator listening on %s\n", push.Endpoints()[0])
	for i := 1; i <= jobs; i++ {
		if err := push.Push(ctx, Job{ID: i, Cost: cost}); err != nil {
			return err
		}
	}
	if err := push.Drain(ctx); err != nil {
		return err
	}
	st := push.Stats()
	fmt.Printf("ventilator: %d jobs acknowledged, %d redelivered, %d dead\n", st.Acked, st.Retried, st.Dead)
	return nil
}

// runWorker does jobs until interrupted. A job is acknowledged when the
// handler returns nil, after the sink confirmed its result.
func runWorker(ctx context.Context, name, ventilator, sink string) error {
	toSink, err := pattern.NewRequester[Result, bool](pattern.WithConnect(sink), pattern.WithName(name),
		pattern.WithTimeout(2*time.Second), pattern.WithRetries(5))
	if err != nil {
		return err
	}
	defer toSink.Close()
	pull, err := pattern.NewPuller(func(ctx context.Context, j Job) error {
		select {
		case <-time.After(j.Cost): // the work
		case <-ctx.Done():
			return ctx.Err()
		}
		if _, err := toSink.Request(ctx, Result{JobID: j.ID, Worker: name}); err != nil {
			return err // nacked: the ventilator gives the job to someone
		}
		fmt.Printf("%s did job %d\n", name, j.ID)
		return nil
	}, pattern.WithAck(), pattern.WithConnect(ventilator), pattern.WithCredit(4), pattern.WithWorkers(4), pattern.WithName(name))
	if err != nil {
		return err
	}
	defer pull.Close()
	fmt.Printf("%s working for %s (pid %d)\n", name, ventilator, os.Getpid())
	<-ctx.Done()
	return ctx.Err()
}

// runSink collects one result per job. It says when it has them all and
// keeps confirming results (late duplicates included) until interrupted:
// a worker that did a job twice must still hear back, or it would nack it.
func runSink(ctx context.Context, bind string, jobs int) error {
	var (
		mu    sync.Mutex
		got   = make(map[int]string)
		dupes int
	)
	rep, err := pattern.NewReplier(func(_ context.Context, r Result) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if _, seen := got[r.JobID]; seen {
			dupes++ // a worker died after the result, before its ack
			fmt.Printf("sink: job %d again, from %s: ignored\n", r.JobID, r.Worker)
			return true, nil
		}
		got[r.JobID] = r.Worker
		if len(got) == jobs {
			perWorker := make(map[string]int)
			for _, w := range got {
				perWorker[w]++
			}
			fmt.Printf("sink: all %d results, per worker %v\n", len(got), perWorker)
		}
		return true, nil
	}, pattern.WithBind(bind), pattern.WithName("sink"))
	if err != nil {
		return err
	}
	defer rep.Close()
	fmt.Printf("sink listening on %s\n", rep.Endpoints()[0])
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("sink: %d of %d results, %d duplicates ignored\n", len(got), jobs, dupes)
	if len(got) < jobs {
		return fmt.Errorf("%d results missing", jobs-len(got))
	}
	return nil
}
