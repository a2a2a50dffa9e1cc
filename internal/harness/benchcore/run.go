package benchcore

import (
	"context"
	"errors"
)

// Run measures the selected scenarios on zpeer alone: its socket engine
// and its typed patterns (see ZpeerStacks).
func Run(ctx context.Context, cfg Config, progress func(done, total int)) ([]Result, error) {
	return RunStacks(ctx, cfg, ZpeerStacks(), progress)
}

// ZpeerStacks returns zpeer's stacks: the socket engine, the typed
// patterns, and the acknowledged pipeline in memory and with a durable
// outbox in sync and batched mode.
func ZpeerStacks() []Stack {
	return []Stack{Zpeer(), ZpeerInproc(), ZpeerTyped(), ZpeerTypedBorrowed(), ZpeerAcked(), ZpeerDurableSync(), ZpeerDurableBatched()}
}

type plan struct {
	sc     Scenario
	stacks []Stack
}

// RunStacks measures the selected scenarios on every stack, interleaving
// the stacks within each run so that a change in the machine's load falls
// on all of them. It returns one Result per scenario and stack, in
// scenario order; a stack that cannot do a scenario gets NA. A failed
// measurement is recorded in its Result and the run goes on; only ctx ends
// it early.
func RunStacks(ctx context.Context, cfg Config, stacks []Stack, progress func(done, total int)) ([]Result, error) {
	cfg = cfg.withDefaults()
	var plans []*plan
	for _, sc := range Scenarios() {
		if Selected(sc.Name, cfg.Scenarios) {
			plans = append(plans, &plan{sc: sc, stacks: stacks})
		}
	}

	total := 0
	for _, pl := range plans {
		total += cfg.Runs * len(pl.stacks)
	}
	type key struct{ sc, st string }
	samples := map[key][]Sample{}
	errs := map[key][]error{}
	na := map[key]bool{}
	done := 0
	for run := 0; run < cfg.Runs; run++ {
		for _, pl := range plans {
			for _, st := range pl.stacks {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				k := key{pl.sc.Name, st.Name()}
				done++
				if na[k] {
					continue
				}
				p := Params{Scenario: pl.sc, Duration: cfg.Duration, MaxMsgs: cfg.MaxMsgs, Rate: cfg.Rate, Drain: cfg.Drain, Idle: cfg.Idle, Setup: cfg.Setup}
				if lim := cfg.MaxBytes / int64(max(pl.sc.Size, 1)); lim < int64(p.MaxMsgs) {
					p.MaxMsgs = int(max(lim, 1))
				}
				s, err := Measure(ctx, st, p)
				switch {
				case errors.Is(err, ErrNotSupported):
					na[k] = true
				case err != nil && s.Sent == 0:
					errs[k] = append(errs[k], err)
				default:
					if err != nil {
						s.Detail = JoinDetail(s.Detail, "error: "+err.Error())
					}
					samples[k] = append(samples[k], s)
				}
				if progress != nil {
					progress(done, total)
				}
			}
		}
	}
	var rs []Result
	for _, pl := range plans {
		for _, st := range pl.stacks {
			k := key{pl.sc.Name, st.Name()}
			if na[k] {
				rs = append(rs, Result{Scenario: pl.sc.Name, Stack: st.Name(), Kind: pl.sc.Kind, Size: pl.sc.Size, Peers: pl.sc.Peers, NA: true})
				continue
			}
			rs = append(rs, aggregate(pl.sc, st.Name(), samples[k], errs[k]))
		}
	}
	AddRatios(rs)
	return rs, nil
}

// JoinDetail joins non-empty notes with "; ".
func JoinDetail(notes ...string) string {
	var out string
	for _, n := range notes {
		if n == "" {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += n
	}
	return out
}
