// Command partition is a partitioned pipeline: transactions on bank
// accounts, applied by a pool of tellers, each account's transactions in
// the order the bank issued them, even while tellers die and join.
//
// The bank pushes every transaction with an acked Pusher partitioned by
// account (pattern.WithPartitionKey): all the transactions of an account
// go to one teller, and the account's next transaction is handed out only
// once the one before it is acknowledged. Tellers are acked Pullers: a
// teller applies a transaction at the ledger (a request/reply) and
// acknowledges it once the ledger confirmed. The ledger keeps each
// account's balance and the number of the last transaction applied to it,
// and counts any transaction that arrives out of order (there should be
// none) or again (a teller that died after the ledger confirmed, before
// its acknowledgement: the bank redelivers, and the ledger ignores it).
//
// When a teller dies its accounts go to the others (only its accounts
// move); when one joins it takes about its share of the accounts from the
// others. Accounts keep flowing meanwhile: a busy teller holds up only
// its own.
//
// Build it first, so that kill reaches the teller (under "go run", kill -9
// hits the go command and leaves the program running):
//
//	go build -o partition ./examples/partition
//	./partition -role ledger -bind tcp://127.0.0.1:5560 &
//	./partition -role bank -bind tcp://127.0.0.1:5559 &
//	./partition -role teller -name t1 -bank tcp://127.0.0.1:5559 -ledger tcp://127.0.0.1:5560 &
//	./partition -role teller -name t2 -bank tcp://127.0.0.1:5559 -ledger tcp://127.0.0.1:5560 &
//
// Each teller prints its process id ("t1 serving ... (pid 4242)"); kill
// one with kill -9 4242 while the bank runs, start another: the ledger
// still ends with every account's transactions applied once, in order.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/zpeer/zpeer/pattern"
)

// Txn is the Seq-th transaction (from 1) of an account: add Amount to
// its balance.
type Txn struct {
	Account string
	Seq     int
	Amount  int
	Cost    time.Duration // how long a teller takes over it
}

// Applied is what a teller asks the ledger to record.
type Applied struct {
	Txn    Txn
	Teller string
}

func main() {
	var (
		role      = flag.String("role", "", "bank, teller or ledger")
		bind      = flag.String("bind", "tcp://127.0.0.1:0", "bank and ledger: endpoint to listen on")
		bank      = flag.String("bank", "", "teller: the bank's endpoint")
		ledger    = flag.String("ledger", "", "teller: the ledger's endpoint")
		accounts  = flag.Int("accounts", 10, "bank and ledger: number of accounts")
		perAcct   = flag.Int("txns", 20, "bank and ledger: transactions per account")
		cost      = flag.Duration("cost", 250*time.Millisecond, "bank: a teller's time per transaction, long enough to kill a teller in the middle")
		name      = flag.String("name", fmt.Sprintf("teller-%d", os.Getpid()), "teller: its name, which its share of the accounts follows")
		perTeller = flag.Int("parallel", 4, "teller: accounts it works on at once")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("partition: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "bank":
		err = runBank(ctx, *bind, *accounts, *perAcct, *cost)
	case "teller":
		if *bank == "" || *ledger == "" {
			log.Fatal("a teller needs -bank and -ledger")
		}
		err = runTeller(ctx, *name, *bank, *ledger, *perTeller)
	case "ledger":
		err = runLedger(ctx, *bind, *accounts, *perAcct)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// account names the i-th account.
func account(i int) string { return fmt.Sprintf("acct-%03d", i) }

// amount is the Seq-th transaction's amount: the final balance of every
// account is known in advance (see runLedger).
func amount(seq int) int { return seq }

// runBank issues the transactions, the accounts taking turns, and waits
// until every one is acknowledged.
func runBank(ctx context.Context, bind string, accounts, perAcct int, cost time.Duration) error {
	push, err := pattern.NewPusher[Txn](pattern.WithAck(), pattern.WithBind(bind),
		pattern.WithPartitionKey(func(t Txn) string { return t.Account }), // one account, one teller, in order
		pattern.WithAckTimeout(10*time.Second),
		pattern.WithName("bank"))
	if err != nil {
		return err
	}
	defer push.Close()
	fmt.Printf("bank listening on %s\n", push.Endpoints()[0])
	for seq := 1; seq <= perAcct; seq++ {
		for a := range accounts {
			if err := push.Push(ctx, Txn{Account: account(a), Seq: seq, Amount: amount(seq), Cost: cost}); err != nil {
				return err
			}
		}
	}
	if err := push.Drain(ctx); err != nil {
		return err
	}
	st := push.Stats()
	fmt.Printf("bank: %d transactions acknowledged, %d redelivered, %d dead\n", st.Acked, st.Retried, st.Dead)
	return nil
}

// runTeller applies transactions until interrupted. A transaction is
// acknowledged when the handler returns nil, after the ledger confirmed
// it; the Puller runs up to parallel handlers at once, and the bank never
// gives it two transactions of one account at a time.
func runTeller(ctx context.Context, name, bank, ledger string, parallel int) error {
	toLedger, err := pattern.NewRequester[Applied, bool](pattern.WithConnect(ledger), pattern.WithName(name),
		pattern.WithTimeout(2*time.Second), pattern.WithRetries(5))
	if err != nil {
		return err
	}
	defer toLedger.Close()
	pull, err := pattern.NewPuller(func(ctx context.Context, t Txn) error {
		select {
		case <-time.After(t.Cost): // the work
		case <-ctx.Done():
			return ctx.Err()
		}
		if _, err := toLedger.Request(ctx, Applied{Txn: t, Teller: name}); err != nil {
			return err // nacked: the bank hands it out again
		}
		fmt.Printf("%s applied %s #%d\n", name, t.Account, t.Seq)
		return nil
	}, pattern.WithAck(), pattern.WithConnect(bank), pattern.WithName(name), // the name the accounts are shared out by
		pattern.WithCredit(parallel), pattern.WithWorkers(parallel))
	if err != nil {
		return err
	}
	defer pull.Close()
	fmt.Printf("%s serving %s (pid %d)\n", name, bank, os.Getpid())
	<-ctx.Done()
	return ctx.Err()
}

// runLedger records transactions: each account's must come in order, 1,
// 2, 3, ...; one that comes again is confirmed and ignored, one that comes
// early is counted as out of order and refused (its teller nacks it).
func runLedger(ctx context.Context, bind string, accounts, perAcct int) error {
	var (
		mu       sync.Mutex
		balance  = make(map[string]int)
		last     = make(map[string]int)
		tellers  = make(map[string]map[string]bool) // account -> tellers that applied its transactions
		applied  int
		again    int
		outOfSeq int
	)
	total := accounts * perAcct
	rep, err := pattern.NewReplier(func(_ context.Context, a Applied) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		t := a.Txn
		switch {
		case t.Seq <= last[t.Account]:
			again++ // its teller died after this reply, before its acknowledgement
			return true, nil
		case t.Seq != last[t.Account]+1:
			outOfSeq++
			fmt.Printf("ledger: %s #%d out of order (last applied #%d)\n", t.Account, t.Seq, last[t.Account])
			return false, fmt.Errorf("%s #%d before #%d", t.Account, t.Seq, last[t.Account]+1)
		}
		last[t.Account] = t.Seq
		balance[t.Account] += t.Amount
		if tellers[t.Account] == nil {
			tellers[t.Account] = make(map[string]bool)
		}
		tellers[t.Account][a.Teller] = true
		if applied++; applied == total {
			fmt.Printf("ledger: all %d transactions applied, %d out of order\n", applied, outOfSeq)
		}
		return true, nil
	}, pattern.WithBind(bind), pattern.WithName("ledger"))
	if err != nil {
		return err
	}
	defer rep.Close()
	fmt.Printf("ledger listening on %s\n", rep.Endpoints()[0])
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
	want := perAcct * (perAcct + 1) / 2 // the sum of amount(1..perAcct)
	names := make([]string, 0, len(balance))
	for acct := range balance {
		names = append(names, acct)
	}
	sort.Strings(names)
	wrong := 0
	for _, acct := range names {
		var who []string
		for t := range tellers[acct] {
			who = append(who, t)
		}
		sort.Strings(who)
		fmt.Printf("ledger: %s balance %d after #%d, applied by %v\n", acct, balance[acct], last[acct], who)
		if balance[acct] != want {
			wrong++
		}
	}
	fmt.Printf("ledger: %d of %d transactions, %d out of order, %d again ignored, %d of %d balances right\n",
		applied, total, outOfSeq, again, len(names)-wrong, accounts)
	if applied < total || wrong > 0 || len(names) < accounts {
		return fmt.Errorf("%d transactions missing, %d balances wrong", total-applied, wrong+accounts-len(names))
	}
	return nil
}
