package discovery

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// BrowseServices finds the service types announced on the loopback
// interface, and names a missing interface with ErrNoInterface.
func TestBrowseServicesLoopback(t *testing.T) {
	svc := uniqueService(t)
	a, err := Announce(svc, "PUB", []string{"tcp://127.0.0.1:5555"}, WithLoopback())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		names, err := BrowseServices(ctx, time.Second, WithLoopback())
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, svc) {
			break
		}
	}
	if _, err := BrowseServices(ctx, time.Second, WithInterfaces("no-such-if0")); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("BrowseServices on a missing interface: %v, want ErrNoInterface", err)
	}
}
