package discovery

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

var processNode = sync.OnceValue(newNodeID)

// newNodeID draws a node id: 16 lowercase hex digits at random.
func newNodeID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("discovery: no randomness for the node id: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// NodeID returns a node id for this process: 16 lowercase hex digits drawn
// at random the first time it is called, the same for the rest of the
// process. It is not the default: every Announcer and Watcher draws an id
// of its own, so that a Replier and a Requester (or any announcer and
// watcher) in one program find each other. Pass NodeID, or any stable id,
// to WithNodeID on an Announcer and a Watcher that must not see each other
// (a program that both announces a service and watches it, and must not
// connect to itself).
func NodeID() string { return processNode() }

// validNodeID accepts 1 to 32 characters from [0-9A-Za-z_-].
func validNodeID(id string) bool {
	if len(id) == 0 || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
