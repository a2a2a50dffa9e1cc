package bench

import (
	"fmt"
	"strings"

	"github.com/zpeer/zpeer/internal/harness/benchcore"
)

// Stacks returns every stack, zpeer first and the references last.
func Stacks() []benchcore.Stack {
	return append(benchcore.ZpeerStacks(), benchcore.ZpeerCurve(), Libzmq{}, Libzmq{Inproc: true}, LibzmqCurve(), GoZMQ4{}, Mangos{}, NATS{},
		JetStream{Window: 256}, JetStream{SyncAlways: true, Window: 256}, TCP{})
}

// StackNames lists the names Stacks returns.
func StackNames() []string {
	var ns []string
	for _, s := range Stacks() {
		ns = append(ns, s.Name())
	}
	return ns
}

// Select returns the stacks named in the comma-separated list ("" or "all"
// for every stack).
func Select(list string) ([]benchcore.Stack, error) {
	if list == "" || list == "all" {
		return Stacks(), nil
	}
	by := map[string]benchcore.Stack{}
	for _, s := range Stacks() {
		by[s.Name()] = s
	}
	var out []benchcore.Stack
	for _, n := range strings.Split(list, ",") {
		s, ok := by[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("bench: unknown stack %q (have %s)", n, strings.Join(StackNames(), ", "))
		}
		out = append(out, s)
	}
	return out, nil
}
