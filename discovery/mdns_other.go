//go:build !linux

package discovery

import "net"

// restrictMulticast is a no-op outside Linux; packets from interfaces that
// were not selected are still dropped by mconn.recv.
func restrictMulticast(*net.UDPConn) error { return nil }
