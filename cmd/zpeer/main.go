// Command zpeer talks to ZeroMQ peers from the shell: it sends what it reads
// on standard input (or its arguments) and prints what it receives on
// standard output, one message a line, with errors on standard error and
// exit codes that scripts can trust (0 done, 1 runtime failure, 2 bad usage,
// 130/143 interrupted). It also lists the peers that discovery sees, runs the
// demo network and the benchmarks.
//
// Run "zpeer --help" for the commands and "zpeer COMMAND --help" for each
// command's flags and an example.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sigs:
			sig := s.(syscall.Signal)
			stop(interrupted{sig})
			// A second signal means: stop now, without lingering.
			select {
			case <-sigs:
				os.Exit(interrupted{sig}.code())
			case <-done:
			}
		case <-done:
		}
	}()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	return a.execute(ctx, args)
}
