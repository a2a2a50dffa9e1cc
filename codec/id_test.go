package codec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"testing"
)

func TestNewIDUniqueAndIncreasing(t *testing.T) {
	const goroutines, perG = 8, 1000
	ids := make(chan ID, goroutines*perG)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			prev := uint64(0)
			for range perG {
				id := NewID()
				c := binary.BigEndian.Uint64(id[8:])
				if c <= prev {
					t.Errorf("counter went from %d to %d", prev, c)
				}
				prev = c
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[ID]bool)
	var prefix [8]byte
	first := true
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %v", id)
		}
		seen[id] = true
		if id.IsZero() {
			t.Fatal("NewID returned the zero ID")
		}
		if first {
			copy(prefix[:], id[:8])
			first = false
		} else if [8]byte(id[:8]) != prefix {
			t.Fatalf("prefix changed within a process: %v", id)
		}
	}
}

func TestNewIDAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = NewID() }); n != 0 {
		t.Errorf("NewID: %v allocs, want 0", n)
	}
}

func TestIDString(t *testing.T) {
	id := fixedID(0xa0)
	const want = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
	if got := id.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	parsed, err := ParseID(want)
	if err != nil || parsed != id {
		t.Errorf("ParseID(%q) = %v, %v", want, parsed, err)
	}
	upper, err := ParseID("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")
	if err != nil || upper != id {
		t.Errorf("ParseID upper case = %v, %v", upper, err)
	}
	if (ID{}).String() != "00000000000000000000000000000000" {
		t.Errorf("zero ID String = %q", ID{}.String())
	}
}

func TestParseIDErrors(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"short", "a0a1"},
		{"long", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf00"},
		{"not hex", "g0a1a2a3a4a5a6a7a8a9aaabacadaeaf"},
		{"dashes", "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadae"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseID(tc.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseID(%q) error = %v, want ErrMalformed", tc.in, err)
			}
		})
	}
}

func TestIDText(t *testing.T) {
	type doc struct{ ID ID }
	in := doc{ID: fixedID(7)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ID":"0708090a0b0c0d0e0f10111213141516"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("json round trip = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"ID":"xyz"}`), &out); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad json id: %v", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindData: "data", KindReply: "reply", KindError: "error", KindAck: "ack", KindNack: "nack", 9: "kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
