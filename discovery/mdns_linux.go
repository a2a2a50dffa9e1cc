package discovery

import (
	"net"
	"syscall"
)

// ipMulticastAll is IP_MULTICAST_ALL from linux/in.h (missing from package
// syscall).
const ipMulticastAll = 49

// restrictMulticast turns IP_MULTICAST_ALL off: by default Linux delivers a
// multicast datagram to every socket bound to the port once any socket on
// the host joined the group on the arriving interface.
func restrictMulticast(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipMulticastAll, 0)
	}); err != nil {
		return err
	}
	return serr
}
