package pattern

import (
	"context"
	"testing"
	"time"

	"github.com/zpeer/zpeer/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const loopback = "tcp://127.0.0.1:0"

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// closer is anything with a Close method.
type closer interface{ Close() error }

// cleanup closes c at the end of the test.
func cleanup[C closer](t testing.TB, c C, err error) C {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type endpointer interface{ Endpoints() []string }

func ep(t testing.TB, e endpointer) string {
	t.Helper()
	eps := e.Endpoints()
	if len(eps) == 0 {
		t.Fatal("no bound endpoint")
	}
	return eps[0]
}
