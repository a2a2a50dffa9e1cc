// Package netns builds throwaway network labs for tests: Linux network
// namespaces that stand for hosts on one Ethernet segment, each joined by a
// veth pair to a bridge that lives in a namespace of its own. Nothing is
// created in, or attached to, the machine's own network namespace, so
// multicast sent in a lab never reaches a real interface.
//
// It needs Linux, root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's ip
// command; Check says whether they are there. It is not for production
// code.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Lab is a set of hosts on one bridge.
type Lab struct {
	// Bridge is the namespace that holds the bridge "br0".
	Bridge string
	// Hosts are the namespaces standing for hosts, each with "lo" and
	// "eth0" up and eth0 addressed on the lab's /24.
	Hosts []Host

	id      string
	created []string
}

// Host is one namespace of a Lab.
type Host struct {
	// NS is the namespace name, for "ip netns exec".
	NS string
	// Addr is the IPv4 address of its eth0.
	Addr string
	// link is the bridge-side end of its veth pair.
	link string
}

// Check returns nil if labs can be built here, or why not.
func Check() error {
	if runtime.GOOS != "linux" {
		return errors.New("netns: network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("netns: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("netns: the ip command (iproute2) is missing")
	}
	return nil
}

// New builds a lab of n hosts with addresses 10.<a>.<b>.1 to .n on a /24
// chosen at random, with namespace names unique to this call. On error,
// whatever was built is removed.
func New(n int) (*Lab, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if n < 1 || n > 200 {
		return nil, fmt.Errorf("netns: %d hosts", n)
	}
	var r [5]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(r[:3])
	l := &Lab{id: id, Bridge: "zpt-" + id + "-br"}
	subnet := fmt.Sprintf("10.%d.%d.", 64+int(r[3])%128, r[4])
	if err := l.build(n, subnet); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(n int, subnet string) error {
	if err := l.addNS(l.Bridge); err != nil {
		return err
	}
	if err := run("ip", "-n", l.Bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := run("ip", "-n", l.Bridge, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		h := Host{
			NS:   fmt.Sprintf("zpt-%s-h%d", l.id, i),
			Addr: fmt.Sprintf("%s%d", subnet, i),
			link: fmt.Sprintf("zp%sb%d", l.id, i),
		}
		tmp := fmt.Sprintf("zp%sh%d", l.id, i)
		if err := l.addNS(h.NS); err != nil {
			return err
		}
		// Both ends are created straight in their namespaces.
		for _, argv := range [][]string{
			{"ip", "link", "add", tmp, "netns", h.NS, "type", "veth", "peer", "name", h.link, "netns", l.Bridge},
			{"ip", "-n", h.NS, "link", "set", tmp, "name", "eth0"},
			{"ip", "-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
			{"ip", "-n", h.NS, "link", "set", "lo", "up"},
			{"ip", "-n", l.Bridge, "link", "set", h.link, "master", "br0"},
			{"ip", "-n", l.Bridge, "link", "set", h.link, "up"},
		} {
			if err := run(argv...); err != nil {
				return err
			}
		}
		l.Hosts = append(l.Hosts, h)
	}
	return nil
}

func (l *Lab) addNS(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	l.created = append(l.created, name)
	return nil
}

// Command returns the argv prefix that runs a program in host i's
// namespace: append the program and its arguments.
func (l *Lab) Command(i int) []string {
	return []string{"ip", "netns", "exec", l.Hosts[i].NS}
}

// SetLink takes host i's link to the bridge down (cut off from the others)
// or up again.
func (l *Lab) SetLink(i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "-n", l.Bridge, "link", "set", l.Hosts[i].link, state)
}

// Close deletes the lab's namespaces (and with them their interfaces).
// Processes still running in them must be stopped first by the caller.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.created) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", l.created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.created = nil
	return errors.Join(errs...)
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// InBridge runs fn on an OS thread that has entered the namespace of the
// lab's bridge, and returns its error. Sockets fn opens stay in that
// namespace after it returns (a packet socket on "br0" sees every frame
// the hosts send), whatever thread later uses them. The calling
// goroutine's thread goes back to its own namespace; if it cannot, the
// thread is discarded.
func (l *Lab) InBridge(fn func() error) error { return inNamespace(l.Bridge, fn) }
