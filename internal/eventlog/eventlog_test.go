package eventlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A burst, then one line a second, and the next line says how many were
// held back.
func TestRateLimit(t *testing.T) {
	var l Logger
	t0 := time.Unix(1000, 0)
	for i := range Burst {
		if ok, _ := l.allow(t0); !ok {
			t.Fatalf("line %d of the burst held back", i)
		}
	}
	for range 5 {
		if ok, _ := l.allow(t0.Add(10 * time.Millisecond)); ok {
			t.Fatal("a line beyond the burst went out")
		}
	}
	ok, suppressed := l.allow(t0.Add(Every + 10*time.Millisecond))
	if !ok || suppressed != 5 {
		t.Fatalf("after a second: ok %v, suppressed %d, want true, 5", ok, suppressed)
	}
}

func TestLogFieldsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if l.Enabled(slog.LevelDebug) || !l.Enabled(slog.LevelWarn) {
		t.Error("Enabled does not follow the handler's level")
	}
	l.Log(slog.LevelDebug, Connect, "endpoint", "tcp://x")
	for range Burst + 3 {
		l.Log(slog.LevelWarn, DeadLetter, "id", "abc", "deliveries", 5)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != Burst || !strings.Contains(lines[0], `msg="dead letter" id=abc deliveries=5`) {
		t.Fatalf("%d lines, first %q", len(lines), lines[0])
	}
	var nilLogger *Logger
	nilLogger.Log(slog.LevelError, Gap) // discards, no panic
	New(nil).Log(slog.LevelError, Gap)
}
