// Package udpsock reports, from the operating system's point of view, how
// many UDP sockets this process holds bound to a given port. Tests use it
// to check that package discovery opens one mDNS socket per interface per
// process, whatever the number of announcers and watchers.
//
// It reads /proc (Linux only; elsewhere Count returns ErrUnsupported) and
// is not for use outside tests.
package udpsock
