package pattern

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/zpeer/zpeer/internal/testutil"
)

// Issue 12 item 8: json tags name the keys when there is no msgpack tag,
// and a key the receiving type has no field for shows in the debug log.
func TestJSONTagsAndUnknownKeys(t *testing.T) {
	type sent struct {
		UserID int    `json:"user_id"`
		Extra  string `json:"extra"`
	}
	type received struct {
		UserID int `json:"user_id"`
	}
	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	got := make(chan received, 1)
	pl, err := NewPuller(func(_ context.Context, v received) error { got <- v; return nil },
		WithBind(loopback), WithLogger(logger))
	pl = cleanup(t, pl, err)
	push, err := NewPusher[sent](WithConnect(ep(t, pl)))
	push = cleanup(t, push, err)
	if err := push.Push(ctxT(t), sent{UserID: 7, Extra: "x"}); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v.UserID != 7 {
		t.Fatalf("got %+v, want UserID 7", v)
	}
	waitFor(t, "the unknown key in the debug log", func() bool {
		return strings.Contains(logs.String(), "key=extra")
	})
}
