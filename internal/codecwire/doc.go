// Package codecwire holds the MessagePack pieces that codec and pattern
// share and no user of codec needs: a pool of encode buffers and the
// writers of str and bin headers (codec's encoder writes its strings and
// bodies with them, pattern writes []byte and string bodies and state keys
// directly). It is not an encoder: envelopes and values are codec's.
package codecwire
