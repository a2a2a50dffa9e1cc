package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// CountUDP starts counting the UDP packets to port that enter the bridge;
// Close stops it.
func (f *Fleet) CountUDP(port int) (*Traffic, error) {
	t := &Traffic{port: uint16(port)}
	fd := -1
	err := f.Lab.InBridge(func() error {
		br, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		// SOCK_DGRAM: the frames without their link-layer header, IPv4
		// only.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: br.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		// A receive timeout, so that the reader notices Close.
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: packet socket on the bridge: %w", err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	t.stop = func() {
		stop.Store(true)
		<-done
		unix.Close(fd)
	}
	go func() {
		defer close(done)
		t.read(fd, &stop)
	}()
	return t, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// read counts packets from fd until stop is set.
func (t *Traffic) read(fd int, stop *atomic.Bool) {
	buf := make([]byte, 65536)
	for !stop.Load() {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // the bridge's own sends: none, but not the hosts'
		}
		t.count(buf[:n])
	}
}

// count counts one IPv4 packet if it is UDP to the port (the first
// fragment of a fragmented one counts; the others carry no UDP header).
func (t *Traffic) count(p []byte) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_UDP {
		return
	}
	if binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
		return // not the first fragment
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 || binary.BigEndian.Uint16(p[ihl+2:]) != t.port {
		return
	}
	t.packets.Add(1)
	t.bytes.Add(uint64(len(p)))
	if dns := p[ihl+8:]; len(dns) >= 3 {
		if dns[2]&0x80 != 0 {
			t.responses.Add(1)
		} else {
			t.queries.Add(1)
		}
	}
}
