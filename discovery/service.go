package discovery

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ServiceType returns the DNS-SD service type that carries the application
// service name: "telemetry" becomes "_telemetry._tcp". The name must follow
// the rules of RFC 6335 section 5.1 for service names, which DNS-SD browsers
// (python-zeroconf among them) enforce: 1 to 15 characters, letters, digits
// and hyphens, at least one letter, no hyphen at either end and no two in a
// row. Upper case is folded to lower case. A name given already as
// "_name._tcp" is accepted too.
//
// A foreign service that happens to use the same type is told apart by the
// TXT key "zpeer" (see docs/discovery.md) and ignored.
func ServiceType(name string) (string, error) {
	n, err := serviceName(name)
	if err != nil {
		return "", err
	}
	return "_" + n + "._tcp", nil
}

// serviceName validates name and returns its bare lower-case form.
func serviceName(name string) (string, error) {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "_") && strings.HasSuffix(n, "._tcp") {
		n = strings.TrimSuffix(strings.TrimPrefix(n, "_"), "._tcp")
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrInvalidService, name, why)
	}
	if n == "" {
		return bad("empty")
	}
	if len(n) > 15 {
		return bad("longer than 15 characters (RFC 6335)")
	}
	letter := false
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-':
			if i == 0 || i == len(n)-1 {
				return bad("starts or ends with a hyphen")
			}
			if n[i-1] == '-' {
				return bad("two hyphens in a row")
			}
		default:
			return bad(fmt.Sprintf("character %q not allowed (letters, digits, hyphens)", c))
		}
	}
	if !letter {
		return bad("needs at least one letter")
	}
	return n, nil
}

// socketTypes lists the ZMTP socket types, upper case.
var socketTypes = map[string]bool{
	"REQ": true, "REP": true, "DEALER": true, "ROUTER": true,
	"PUB": true, "SUB": true, "XPUB": true, "XSUB": true,
	"PUSH": true, "PULL": true, "PAIR": true,
}

// socketType validates t and returns it upper case.
func parseSocketType(t string) (string, error) {
	u := strings.ToUpper(t)
	if !socketTypes[u] {
		return "", fmt.Errorf("%w %q", ErrInvalidSocketType, t)
	}
	return u, nil
}

// checkEndpoint accepts "transport://address". A tcp endpoint needs
// host:port with a numeric port; the host may be a wildcard ("*",
// "0.0.0.0", "::" or empty), which watchers replace with the address they
// saw the announcement come from.
func checkEndpoint(ep string) error {
	scheme, addr, ok := strings.Cut(ep, "://")
	if !ok || scheme == "" || addr == "" {
		return fmt.Errorf("%w %q: want transport://address", ErrInvalidEndpoint, ep)
	}
	if scheme == "tcp" {
		if _, err := endpointPort(ep); err != nil {
			return err
		}
	}
	return nil
}

// endpointPort returns the port of a tcp:// endpoint.
func endpointPort(ep string) (uint16, error) {
	addr, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return 0, fmt.Errorf("%w %q: not tcp", ErrInvalidEndpoint, ep)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %v", ErrInvalidEndpoint, ep, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%w %q: bad port %q", ErrInvalidEndpoint, ep, port)
	}
	return uint16(p), nil
}

// wildcardHost reports whether a tcp endpoint's host means "every
// address" and must be replaced by a reachable address.
func wildcardHost(ep string) bool {
	addr, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	switch host {
	case "", "*", "0.0.0.0", "::", "[::]":
		return true
	}
	return false
}

// resolveEndpoint replaces the wildcard host of a tcp endpoint by ip.
func resolveEndpoint(ep string, ip net.IP) string {
	if ip == nil || !wildcardHost(ep) {
		return ep
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ep, "tcp://"))
	return "tcp://" + net.JoinHostPort(ip.String(), port)
}

// hostLocal reports whether an endpoint can only be reached on the host
// that bound it (ipc://, inproc://). Watchers use such endpoints in the
// single-machine mode only.
func hostLocal(ep string) bool {
	return strings.HasPrefix(ep, "ipc://") || strings.HasPrefix(ep, "inproc://")
}
