package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) demoCommand() *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Run the demo network", RunE: runE(func(*cobra.Command, []string) error { return errors.New("not yet") })}
}
