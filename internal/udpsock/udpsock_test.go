package udpsock

import (
	"net"
	"testing"
)

func TestCount(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	n, err := Count(port)
	if err == ErrUnsupported {
		t.Skip(err)
	}
	if err != nil || n != 1 {
		t.Fatalf("Count(%d) = %d, %v; want 1", port, n, err)
	}
	c.Close()
	if n, err := Count(port); err != nil || n != 0 {
		t.Fatalf("after Close: Count(%d) = %d, %v; want 0", port, n, err)
	}
}
