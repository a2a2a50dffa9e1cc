// Command compare measures zpeer side by side with libzmq, go-zeromq/zmq4,
// mangos v3, NATS and bare TCP over loopback, and prints a markdown table
// with each row's ratio to libzmq and to the bare TCP floor.
//
//	cd bench && go run ./cmd/compare [-runs 5] [-duration 1s] [-scenarios pushpull,reqrep/64B] [-stacks zpeer,libzmq,tcp] [-json out.json] [-md out.md]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/zpeer/zpeer/bench"
	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg benchcore.Config
	var scenarios, stacks, jsonOut, mdOut string
	var list, quiet bool
	flag.IntVar(&cfg.Runs, "runs", benchcore.DefaultRuns, "repetitions of every measurement; medians are reported")
	flag.DurationVar(&cfg.Duration, "duration", benchcore.DefaultDuration, "sending time of one measurement")
	flag.IntVar(&cfg.MaxMsgs, "max-msgs", benchcore.DefaultMaxMsgs, "messages sent in one measurement at most")
	flag.Int64Var(&cfg.MaxBytes, "max-bytes", benchcore.DefaultMaxBytes, "payload bytes sent in one measurement at most")
	flag.IntVar(&cfg.Rate, "rate", benchcore.DefaultRate, "messages/s of the paced fault scenarios")
	flag.StringVar(&scenarios, "scenarios", "", "comma-separated scenario names or prefixes (default all; see -list)")
	flag.StringVar(&stacks, "stacks", "", "comma-separated stacks (default all: "+strings.Join(bench.StackNames(), ",")+")")
	flag.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&mdOut, "md", "", "also write the markdown table to this file")
	flag.BoolVar(&list, "list", false, "list the scenarios and stacks and exit")
	flag.BoolVar(&quiet, "q", false, "no progress on stderr")
	flag.Parse()

	sts, err := bench.Select(stacks)
	if err != nil {
		return err
	}
	if scenarios != "" {
		cfg.Scenarios = strings.Split(scenarios, ",")
	}
	if list {
		for _, sc := range benchcore.Scenarios() {
			fmt.Printf("%-24s %s\n", sc.Name, sc.Desc)
		}
		fmt.Println("stacks:", strings.Join(bench.StackNames(), ", "))
		return nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	started := time.Now()
	var progress func(done, total int)
	if !quiet {
		progress = func(done, total int) {
			fmt.Fprintf(os.Stderr, "\r%d/%d measurements, %v", done, total, time.Since(started).Round(time.Second))
		}
	}
	rs, err := benchcore.RunStacks(ctx, cfg, sts, progress)
	if !quiet {
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return err
	}
	md := fmt.Sprintf("%d runs of %v per measurement, medians (min–max); %s\n\n", max(cfg.Runs, 1), cfg.Duration, benchcore.Machine()) + benchcore.Markdown(rs)
	fmt.Print(md)
	if mdOut != "" {
		if err := os.WriteFile(mdOut, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		b, err := benchcore.NewReport(cfg, started, rs).JSON()
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
