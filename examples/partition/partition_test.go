package main

import (
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/zpeer/zpeer/examples/internal/run"
)

var bin string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = run.Build(".", "partition")
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Three tellers start, one is killed with SIGKILL in the middle of its
// work, a fourth joins: the ledger gets every account's transactions
// once and in order (none out of order, every balance right), and the
// bank sees every transaction acknowledged.
func TestPartitionKeepsEachAccountInOrder(t *testing.T) {
	const accounts, txns = "10", "18"
	ledger := run.Start(t, "ledger", bin, "-role", "ledger", "-accounts", accounts, "-txns", txns)
	ledgerEP := ledger.WaitLine(`^ledger listening on (\S+)$`)[1]
	bank := run.Start(t, "bank", bin, "-role", "bank", "-accounts", accounts, "-txns", txns, "-cost", "10ms")
	bankEP := bank.WaitLine(`^bank listening on (\S+)$`)[1]
	teller := func(name string) *run.Proc {
		return run.Start(t, name, bin, "-role", "teller", "-name", name, "-bank", bankEP, "-ledger", ledgerEP)
	}
	t1, t2, t3 := teller("t1"), teller("t2"), teller("t3")
	// Each teller says its process id, the one kill -9 must be given.
	if pid := t3.WaitLine(`^t3 serving \S+ \(pid (\d+)\)$`)[1]; pid != strconv.Itoa(t3.Pid()) {
		t.Fatalf("t3 says pid %s, its pid is %d", pid, t3.Pid())
	}
	// t3 dies in the middle of its work, without a word.
	t3.WaitLine(`^t3 applied acct-\d+ #\d+$`)
	t3.WaitLine(`^t3 applied acct-\d+ #\d+$`)
	t3.Signal(syscall.SIGKILL)
	// A teller that comes later takes a share of the accounts.
	t4 := teller("t4")
	ledger.WaitLine(`^ledger: all 180 transactions applied, 0 out of order$`)
	bank.WaitLine(`^bank: 180 transactions acknowledged, \d+ redelivered, 0 dead$`)
	bank.MustSucceed()
	for _, p := range []*run.Proc{t1, t2, t4} {
		p.Signal(os.Interrupt)
		p.Wait()
	}
	ledger.Signal(os.Interrupt)
	ledger.WaitLine(`^ledger: 180 of 180 transactions, 0 out of order, \d+ again ignored, 10 of 10 balances right$`)
	if code := ledger.Wait(); code != 0 {
		t.Errorf("ledger: exit %d", code)
	}
}
