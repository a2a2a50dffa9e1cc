package discovery

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

var processNode = sync.OnceValue(func() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("discovery: no randomness for the node id: " + err.Error())
	}
	return hex.EncodeToString(b[:])
})

// NodeID returns this process's node id: 16 lowercase hex digits drawn at
// random the first time it is called, the same for the rest of the process.
// Announcers publish it in the TXT key "node" and Watchers use it to ignore
// their own process's announcements. WithNodeID overrides it per Announcer
// or Watcher (several logical nodes in one process, tests).
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
