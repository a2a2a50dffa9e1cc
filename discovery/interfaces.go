package discovery

import "net"

// Interfaces returns the interfaces that an Announcer or a Watcher built
// with opts would use for mDNS: the loopback interface (WithLoopback), the
// named ones, each up (WithInterfaces), or every interface that is up,
// multicast-capable, not loopback and has an IPv4 address. Errors wrap
// ErrNoInterface or ErrOption.
func Interfaces(opts ...Option) ([]net.Interface, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return selectInterfaces(&o)
}
