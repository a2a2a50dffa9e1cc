package fleet

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/ipv4"

	"github.com/zpeer/zpeer/internal/testutil"
)

// senderEnv selects the helper mode of the test binary: send queries and
// responses to the mDNS group on eth0, then wait for standard input to
// close.
const senderEnv = "ZPEER_FLEET_TEST_SENDER"

func TestMain(m *testing.M) {
	if v := os.Getenv(senderEnv); v != "" {
		os.Exit(sender(v))
	}
	goleak.VerifyTestMain(m)
}

// sender sends n queries and n/2 responses (DNS headers only) to
// 224.0.0.251:5353 on eth0, prints "sent", and exits when its input
// closes, printing "bye".
func sender(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	fmt.Println("ready")
	eth0, err := net.InterfaceByName("eth0")
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetMulticastInterface(eth0); err != nil {
		fmt.Println("error", err)
		return 2
	}
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	query := make([]byte, 12)
	response := []byte{0, 0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := range n + n/2 {
		b := query
		if i >= n {
			b = response
		}
		if _, err := pc.WriteTo(b, nil, group); err != nil {
			fmt.Println("error", err)
			return 2
		}
	}
	fmt.Println("sent")
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Println("bye")
	return 0
}

func line(want string) func([]byte) bool {
	return func(l []byte) bool { return bytes.Equal(l, []byte(want)) || bytes.HasPrefix(l, []byte("error")) }
}

// Two hosts each send 10 queries and 5 responses to the mDNS port: the
// counter on the bridge sees exactly 30 packets (20 queries), processes
// report their usage, Stop ends one gracefully and Kill the other.
func TestFleetProcessesAndTraffic(t *testing.T) {
	f := New(t, 2)
	tr, err := f.CountUDP(5353)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := tr.Count()
	cmd, err := Self(senderEnv + "=10")
	if err != nil {
		t.Fatal(err)
	}
	procs, err := f.StartEach(2, 2, func(int) Command { return cmd }, func(p *Proc) error {
		l, err := p.Wait(20*time.Second, line("sent"))
		if err == nil && string(l) != "sent" {
			err = fmt.Errorf("host %d: %s", p.Host, l)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "30 packets counted on the bridge", func() bool {
		return tr.Count().Sub(before).Packets >= 30
	})
	if c := tr.Count().Sub(before); c.Packets != 30 || c.Queries != 20 || c.Responses != 10 || c.Bytes != 30*(20+8+12) {
		t.Fatalf("counted %+v; want 30 packets of 40 bytes, 20 queries", c)
	}
	for _, p := range procs {
		u, err := p.Usage()
		if err != nil || u.RSS <= 0 {
			t.Fatalf("host %d usage %+v %v", p.Host, u, err)
		}
		if got := p.Lines(); len(got) != 2 || string(got[0]) != "ready" {
			t.Fatalf("host %d printed %q", p.Host, got)
		}
	}
	if err := procs[0].Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := procs[0].Lines(); string(got[len(got)-1]) != "bye" {
		t.Fatalf("host 0 did not leave gracefully: %q", got)
	}
	procs[1].Kill()
	if _, err := procs[1].Wait(time.Second, line("bye")); err == nil {
		t.Fatal("a killed process said bye")
	}
	if _, err := procs[1].Usage(); err == nil {
		t.Fatal("usage of a reaped process")
	}
}
