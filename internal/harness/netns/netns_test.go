package netns

import (
	"os/exec"
	"strings"
	"testing"
)

func TestLab(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	l, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), l.Bridge) {
			t.Errorf("namespace %s left behind", l.Bridge)
		}
	})
	for _, h := range l.Hosts {
		out, err := exec.Command("ip", "-n", h.NS, "-4", "-br", "addr", "show", "eth0").Output()
		if err != nil || !strings.Contains(string(out), h.Addr+"/24") || !strings.Contains(string(out), "UP") {
			t.Fatalf("%s eth0: %s %v", h.NS, out, err)
		}
	}
	ping := func() error {
		argv := append(l.Command(0), "ping", "-c", "1", "-W", "1", l.Hosts[1].Addr)
		return exec.Command(argv[0], argv[1:]...).Run()
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("no ping: reachability not checked")
	}
	if err := ping(); err != nil {
		t.Fatalf("host 1 cannot reach host 2: %v", err)
	}
	if err := l.SetLink(1, false); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err == nil {
		t.Fatal("host 2 still reachable with its link down")
	}
	if err := l.SetLink(1, true); err != nil {
		t.Fatal(err)
	}
}
