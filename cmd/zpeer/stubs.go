package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) peersCommand() *cobra.Command {
	return &cobra.Command{Use: "peers", Short: "List the peers that discovery sees", RunE: runE(func(*cobra.Command, []string) error { return errors.New("not yet") })}
}

func (a *app) demoCommand() *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Run the demo network", RunE: runE(func(*cobra.Command, []string) error { return errors.New("not yet") })}
}

func (a *app) benchCommand() *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Run the benchmarks", RunE: runE(func(*cobra.Command, []string) error { return errors.New("not yet") })}
}
