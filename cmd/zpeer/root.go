package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// app is one run of zpeer: its standard streams.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	errMu sync.Mutex // serialises lines written to stderr
}

// errorf writes one line to standard error.
func (a *app) errorf(format string, args ...any) {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	fmt.Fprintf(a.stderr, format+"\n", args...)
}

func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if !isRuntime(err) {
		// Everything cobra itself reports (unknown flag or command, bad
		// argument count, bad flag value) is a usage error.
		err = usageError{err}
	}
	if errors.As(err, new(reported)) {
		return exitCode(err)
	}
	line := errorLine(err)
	if exitCode(err) == exitUsage {
		path := "zpeer"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		line += " (see '" + path + " --help')"
	}
	a.errorf("%s", line)
	return exitCode(err)
}

// runtimeError marks an error returned by a command's own code, as opposed
// to one cobra produced while parsing the command line.
type runtimeError struct{ err error }

func (e runtimeError) Error() string { return e.err.Error() }
func (e runtimeError) Unwrap() error { return e.err }

func isRuntime(err error) bool {
	var r runtimeError
	return errors.As(err, &r)
}

// runE adapts a command body so that its errors are told apart from
// cobra's parsing errors.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return runtimeError{err}
		}
		return nil
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "zpeer",
		Short: "Talk to ZeroMQ peers from the shell: send, receive, discover, benchmark",
		Long: `zpeer is the command-line side of zpeer, a brokerless messaging toolkit
that speaks ZeroMQ's wire protocol (ZMTP 3).

The socket commands (req rep pub sub push pull dealer router) send each
MESSAGE argument, or else each line of standard input, as one message, and
print each message they receive on standard output, one a line. Errors go to
standard error. Exit codes: 0 done, 1 runtime failure, 2 bad usage, 130 or 143
when stopped by Ctrl-C or SIGTERM.`,
		Example: `  # a reply service and a request, in two terminals
  zpeer rep --bind tcp://127.0.0.1:5555 --exec 'tr a-z A-Z'
  zpeer req --connect tcp://127.0.0.1:5555 hello

  # peers that find each other over mDNS on this machine only
  zpeer pull --bind 'tcp://127.0.0.1:*' --discover jobs --iface lo
  seq 10 | zpeer push --discover jobs --iface lo

  # the demo network and its summary
  zpeer demo`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("zpeer {{.Version}}\n")
	// --version only: -v is every subcommand's --verbose.
	root.Flags().Bool("version", false, "print zpeer's version")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = true
	for _, c := range a.socketCommands() {
		root.AddCommand(c)
	}
	root.AddCommand(a.peersCommand(), a.keygenCommand(), a.demoCommand(), a.benchCommand(), a.versionCommand())
	root.AddCommand(a.proxyCommand())
	root.AddCommand(a.stateCommand())
	return root
}

// flagSet is a helper for commands that need to know whether a flag was set.
func flagChanged(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
