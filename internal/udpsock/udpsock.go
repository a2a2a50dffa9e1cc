package udpsock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// ErrUnsupported is returned where /proc/self/fd and /proc/net/udp do not
// exist.
var ErrUnsupported = errors.New("udpsock: needs Linux /proc")

// Count returns how many UDP sockets (IPv4 and IPv6) open in this process
// are bound to port: the socket inodes that /proc/net/udp{,6} list with
// that local port, intersected with the inodes of /proc/self/fd.
func Count(port int) (int, error) {
	if runtime.GOOS != "linux" {
		return 0, ErrUnsupported
	}
	bound := make(map[string]bool)
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		if err := boundInodes(table, port, bound); err != nil && !(table == "/proc/net/udp6" && errors.Is(err, os.ErrNotExist)) {
			return 0, err
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("udpsock: %w", err)
	}
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && bound[strings.TrimSuffix(inode, "]")] {
			n++
		}
	}
	return n, nil
}

// boundInodes adds to bound the inodes of the sockets of a /proc/net/udp
// table whose local port is port.
func boundInodes(table string, port int, bound map[string]bool) error {
	f, err := os.Open(table)
	if err != nil {
		return fmt.Errorf("udpsock: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
			bound[fields[9]] = true
		}
	}
	return sc.Err()
}
