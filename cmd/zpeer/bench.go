package main

import (
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

type benchOpts struct {
	scenarios []string
	runs      int
	duration  time.Duration
	maxMsgs   int
	rate      int
	json      bool
	list      bool
}

func (a *app) benchCommand() *cobra.Command {
	o := &benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "Measure throughput, latency, reliability and their product on this machine",
		Long: `bench runs zpeer's benchmark scenarios over loopback TCP (127.0.0.1 only):
push/pull throughput per message size, request/reply round trips, pub/sub
fan-out, and the fault scenarios (a puller killed mid-stream, a slow
subscriber). Each is repeated --runs times and the medians are reported as a
markdown table (or JSON with --json) on standard output, with the four figures:
throughput, latency percentiles, reliability (delivered/sent) and the
throughput x latency product.

On a terminal it shows a progress bar; otherwise it logs one line per
measurement on standard error.`,
		Example: `  zpeer bench
  zpeer bench --scenario pushpull --scenario reqrep/64B --runs 3 --duration 500ms
  zpeer bench --json > results.json
  zpeer bench --list`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if o.runs < 0 || o.duration < 0 || o.maxMsgs < 0 || o.rate < 0 {
				return usagef("--runs, --duration, --max-msgs and --rate cannot be negative")
			}
			if o.list {
				return a.listScenarios()
			}
			return a.runBench(cmd, o)
		}),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringArrayVarP(&o.scenarios, "scenario", "s", nil, "run scenario `NAME` or all under a prefix (pushpull, reqrep/64B); repeatable, default all")
	f.IntVar(&o.runs, "runs", benchcore.DefaultRuns, "repeat each measurement `N` times and report the medians")
	f.DurationVar(&o.duration, "duration", benchcore.DefaultDuration, "sending time `D` of one measurement")
	f.IntVar(&o.maxMsgs, "max-msgs", benchcore.DefaultMaxMsgs, "send at most `N` messages per measurement")
	f.IntVar(&o.rate, "rate", benchcore.DefaultRate, "messages/s of the paced fault scenarios")
	f.BoolVar(&o.json, "json", false, "print the results as a JSON report")
	f.BoolVar(&o.list, "list", false, "list the scenarios and exit")
	return cmd
}

func (a *app) listScenarios() error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tKIND\tDESCRIPTION")
	for _, s := range benchcore.Scenarios() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Kind, s.Desc)
	}
	return tw.Flush()
}

func (a *app) runBench(cmd *cobra.Command, o *benchOpts) error {
	var known bool
	for _, s := range benchcore.Scenarios() {
		if benchcore.Selected(s.Name, o.scenarios) {
			known = true
			break
		}
	}
	if !known {
		return usagef("no scenario matches %q (see 'zpeer bench --list')", o.scenarios)
	}
	cfg := benchcore.Config{Runs: o.runs, Duration: o.duration, MaxMsgs: o.maxMsgs, Rate: o.rate, Scenarios: o.scenarios}
	start := time.Now()

	var mu sync.Mutex
	done, total := 0, 0
	status := startStatus(a.stderr, &a.errMu, 200*time.Millisecond, func() string {
		mu.Lock()
		defer mu.Unlock()
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		return fmt.Sprintf("bench [%s] %d/%d %3.0f%% %s", bar(float64(done), float64(total), 30), done, total, pct,
			time.Since(start).Round(time.Second))
	})
	progress := func(d, t int) {
		mu.Lock()
		done, total = d, t
		mu.Unlock()
		if status == nil {
			a.errorf("bench: %d/%d measurements done (%s)", d, t, time.Since(start).Round(100*time.Millisecond))
		}
	}
	ctx := cmd.Context()
	rs, err := benchcore.Run(ctx, cfg, progress)
	status.Stop()
	if in, ok := errInterrupted(ctx); ok {
		a.errorf("zpeer: %s: %d of %d measurements done", in, done, total)
		if len(rs) > 0 {
			printMarkdown(a, benchcore.Markdown(rs))
		}
		return reported{in}
	}
	if err != nil {
		return err
	}
	if o.json {
		b, err := benchcore.NewReport(cfg, start, rs).JSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	return printMarkdown(a, benchcore.Markdown(rs))
}

func printMarkdown(a *app, md string) error {
	if !strings.HasSuffix(md, "\n") {
		md += "\n"
	}
	_, err := fmt.Fprint(a.stdout, md)
	return err
}
