package outbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen: whatever bytes a segment file holds, Open neither fails nor
// panics, and every record it replays is one that was framed with a valid
// checksum (the seeds' records replay intact).
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	l, err := Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := l.Append(context.Background(), id(i), payload(i)); err != nil {
			f.Fatal(err)
		}
	}
	l.Ack(id(2))
	l.Close()
	seg, err := os.ReadFile(filepath.Join(dir, segName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-5])
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		n := 0
		l.Replay(func(ID, []byte) error { n++; return nil })
		if s := l.Stats(); s.Recovered != n || s.Messages != n {
			t.Fatalf("replayed %d, stats %+v", n, s)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
