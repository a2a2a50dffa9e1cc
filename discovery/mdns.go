package discovery

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// mDNS over IPv4 (RFC 6762). zpeer speaks mDNS over IPv4 only; records
// may still carry IPv6 addresses.
const mdnsPort = 5353

var mdnsGroup = net.IPv4(224, 0, 0, 251)

// selectInterfaces returns the interfaces mDNS runs on: the loopback
// interface in single-machine mode, the named ones, or every interface that
// is up, multicast-capable, not loopback and has an IPv4 address.
func selectInterfaces(o *options) ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoInterface, err)
	}
	switch {
	case o.loopback:
		for _, ifi := range all {
			if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
				return []net.Interface{ifi}, nil
			}
		}
		return nil, fmt.Errorf("%w: no loopback interface is up", ErrNoInterface)
	case len(o.interfaces) > 0:
		var out []net.Interface
		for _, name := range o.interfaces {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrNoInterface, name, err)
			}
			if ifi.Flags&net.FlagUp == 0 {
				return nil, fmt.Errorf("%w: %s is down", ErrNoInterface, name)
			}
			out = append(out, *ifi)
		}
		return out, nil
	default:
		var out []net.Interface
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
				continue
			}
			if len(ipv4Addrs(ifi)) > 0 {
				out = append(out, ifi)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: no interface is up, multicast-capable and has an IPv4 address (WithLoopback for one machine)", ErrNoInterface)
		}
		return out, nil
	}
}

// ipv4Addrs returns the IPv4 networks of an interface.
func ipv4Addrs(ifi net.Interface) []*net.IPNet {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []*net.IPNet
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			out = append(out, &net.IPNet{IP: n.IP.To4(), Mask: n.Mask})
		}
	}
	return out
}

// announceAddrs returns the addresses announced on an interface: 127.0.0.1
// in single-machine mode, else the interface's IPv4 addresses.
func announceAddrs(ifi net.Interface, loopback bool) []net.IP {
	if loopback {
		return []net.IP{net.IPv4(127, 0, 0, 1).To4()}
	}
	var out []net.IP
	for _, n := range ipv4Addrs(ifi) {
		out = append(out, n.IP)
	}
	return out
}

// unpackMDNS parses a packet. miekg/dns v1.1.27 rejects a whole message
// when it holds an NSEC record with an empty type bitmap ("dns: empty NSEC
// block"), which python-zeroconf sends for IPv4-only hosts. When parsing
// fails, the NSEC records' type is rewritten to a private-use type that
// miekg/dns keeps as opaque data, and the packet is parsed again.
func unpackMDNS(b []byte) (*dns.Msg, error) {
	m := new(dns.Msg)
	err := m.Unpack(b)
	if err == nil {
		return m, nil
	}
	fixed, n := neutralizeNSEC(b)
	if n == 0 {
		return nil, err
	}
	m = new(dns.Msg)
	if err2 := m.Unpack(fixed); err2 != nil {
		return nil, err
	}
	return m, nil
}

// typePrivate is the first private-use RR type (RFC 6895).
const typePrivate = 0xFF00

// neutralizeNSEC returns a copy of the packet with the type of every NSEC
// record replaced by typePrivate, and how many it replaced. It walks the
// packet without decompressing names, so offsets are unchanged.
func neutralizeNSEC(b []byte) ([]byte, int) {
	if len(b) < 12 {
		return nil, 0
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rr := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	for i := 0; i < qd; i++ {
		if off = skipName(b, off); off < 0 || off+4 > len(b) {
			return nil, 0
		}
		off += 4
	}
	var out []byte
	n := 0
	for i := 0; i < rr; i++ {
		if off = skipName(b, off); off < 0 || off+10 > len(b) {
			return nil, 0
		}
		if binary.BigEndian.Uint16(b[off:]) == dns.TypeNSEC {
			if out == nil {
				out = append([]byte(nil), b...)
			}
			binary.BigEndian.PutUint16(out[off:], typePrivate)
			n++
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return nil, 0
		}
	}
	return out, n
}

// skipName returns the offset after the domain name at off, or -1.
func skipName(b []byte, off int) int {
	for {
		if off >= len(b) {
			return -1
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			if off+2 > len(b) {
				return -1
			}
			return off + 2
		case l&0xC0 != 0:
			return -1
		default:
			off += 1 + l
		}
	}
}

// escapeLabel turns a DNS-SD instance name into one label in miekg/dns
// presentation format.
func escapeLabel(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == ' ' || c == '$':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, "\\%03d", c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// unescapeLabel reverses escapeLabel (and miekg/dns's escaping).
func unescapeLabel(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if v < 256 {
				out = append(out, byte(v))
				i += 3
				continue
			}
		}
		out = append(out, s[i+1])
		i++
	}
	return string(out)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
