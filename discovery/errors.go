package discovery

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (test
// with errors.Is) and add the detail.
var (
	// ErrClosed is returned by calls on a closed Announcer or Watcher.
	ErrClosed = errors.New("discovery: closed")
	// ErrInvalidService reports a service name that cannot become a DNS-SD
	// service type (see ServiceType).
	ErrInvalidService = errors.New("discovery: invalid service name")
	// ErrInvalidSocketType reports a socket type that is not one of REQ,
	// REP, DEALER, ROUTER, PUB, SUB, XPUB, XSUB, PUSH, PULL, PAIR.
	ErrInvalidSocketType = errors.New("discovery: invalid socket type")
	// ErrInvalidEndpoint reports an endpoint that is not
	// "transport://address" (tcp endpoints need a port).
	ErrInvalidEndpoint = errors.New("discovery: invalid endpoint")
	// ErrInvalidMeta reports a metadata key that is empty, contains '=' or
	// a non-printable byte, is reserved by the TXT schema, or is duplicated.
	ErrInvalidMeta = errors.New("discovery: invalid metadata")
	// ErrTXTTooLong reports a TXT entry ("key=value") longer than 255
	// bytes, the limit of one DNS character-string.
	ErrTXTTooLong = errors.New("discovery: TXT entry longer than 255 bytes")
	// ErrTXTTooLarge reports a TXT record larger than 1300 bytes in all,
	// the size RFC 6763 section 6.2 recommends so that an announcement
	// fits in one Ethernet frame.
	ErrTXTTooLarge = errors.New("discovery: TXT record larger than 1300 bytes")
	// ErrOption reports an option with a value out of range, or a
	// combination of options that cannot work together (the name socket
	// and pattern give their option errors).
	ErrOption = errors.New("discovery: invalid option")
	// ErrInvalidOption is the old name of ErrOption, the same error.
	//
	// Deprecated: use ErrOption.
	ErrInvalidOption = ErrOption
	// ErrNoInterface reports that no usable network interface was found
	// for mDNS, or that a named interface does not exist or is down.
	ErrNoInterface = errors.New("discovery: no usable interface")
)
