// Package partition maps partition keys to peers by rendezvous (highest
// random weight) hashing: each key goes to the member whose identity
// scores highest with it. The hashes are fixed functions of the bytes
// (FNV-1a, then a 64-bit finaliser), so every process that sees the same
// members picks the same owner for a key, whatever the order in which
// they connected; when a member leaves only its keys move, and a member
// that joins takes about 1/N of them from the others.
//
// It is what pattern's partitioned Pusher and the zpeer CLI's push
// --key-sep share; it is not for users (pattern.PartitionKey is).
package partition
