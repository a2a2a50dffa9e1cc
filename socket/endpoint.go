package socket

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// endpoint is a parsed ZeroMQ endpoint.
type endpoint struct {
	raw     string
	network string // "tcp" or "unix"
	addr    string // host:port or socket path
}

// parseEndpoint parses tcp://host:port (host may be *, a name or an IP
// address, [v6] in brackets; port may be * or 0 when binding) and
// ipc://path.
func parseEndpoint(ep string, bind bool) (endpoint, error) {
	scheme, rest, ok := strings.Cut(ep, "://")
	if !ok {
		return endpoint{}, fmt.Errorf("%w %q: want tcp://host:port or ipc://path", ErrEndpoint, ep)
	}
	switch scheme {
	case "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return endpoint{}, fmt.Errorf("%w %q: %v", ErrEndpoint, ep, err)
		}
		if port == "*" {
			port = "0"
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			return endpoint{}, fmt.Errorf("%w %q: port %q is not a number from 0 to 65535", ErrEndpoint, ep, port)
		}
		if host == "*" {
			if !bind {
				return endpoint{}, fmt.Errorf("%w %q: cannot connect to host *", ErrEndpoint, ep)
			}
			host = ""
		}
		if !bind && (host == "" || n == 0) {
			return endpoint{}, fmt.Errorf("%w %q: connect needs a host and a non-zero port", ErrEndpoint, ep)
		}
		return endpoint{raw: ep, network: "tcp", addr: net.JoinHostPort(host, strconv.Itoa(n))}, nil
	case "inproc":
		if rest == "" || strings.ContainsAny(rest, "*") {
			return endpoint{}, fmt.Errorf("%w %q: inproc needs a name", ErrEndpoint, ep)
		}
		return endpoint{raw: ep, network: "inproc", addr: rest}, nil
	case "ipc":
		if rest == "" || rest == "*" {
			return endpoint{}, fmt.Errorf("%w %q: ipc needs a path", ErrEndpoint, ep)
		}
		return endpoint{raw: ep, network: "unix", addr: rest}, nil
	}
	return endpoint{}, fmt.Errorf("%w %q: unsupported transport %q (want tcp, ipc or inproc)", ErrEndpoint, ep, scheme)
}

// boundEndpoint renders the address a listener actually got.
func boundEndpoint(e endpoint, a net.Addr) string {
	if e.network == "unix" {
		return "ipc://" + e.addr
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "tcp://" + a.String()
	}
	return "tcp://" + net.JoinHostPort(ta.IP.String(), strconv.Itoa(ta.Port))
}
