package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/zpeer/zpeer/codec"
	"github.com/zpeer/zpeer/internal/partition"
	"github.com/zpeer/zpeer/pattern"
	"github.com/zpeer/zpeer/socket"
)

// push --key-sep SEP: each line's partition key is the text before its
// first SEP (the whole line when it has none), and the whole line is the
// body. Every line of a key goes to the same worker: with --ack through
// pattern's partitioned Pusher (a key's next job waits until the one
// before it is acknowledged), without it by the same rendezvous hashing
// over the PUSH socket's peers.

// partitionKey returns the key of a line sent by push --key-sep.
func (s *session) partitionKey(line []byte) []byte {
	if i := bytes.Index(line, []byte(s.o.keySep)); i >= 0 {
		return line[:i]
	}
	return line
}

// keyed adds the line's partition key to opts when --key-sep is given.
func (s *session) keyed(line []byte, opts []pattern.CallOption) []pattern.CallOption {
	if s.o.keySep == "" {
		return opts
	}
	return append(opts[:len(opts):len(opts)], pattern.PartitionKey(string(s.partitionKey(line))))
}

// runKeyedPush is push --key-sep without --ack: runSend, sending each
// line to its key's owner among the workers connected now.
func (s *session) runKeyedPush(ctx context.Context, args []string) error {
	if err := s.waitPeers(ctx, s.o.peers); err != nil {
		return err
	}
	r := keyRouter{hashes: make(map[*socket.Peer]uint64)}
	src := s.source(args)
	for s.o.count == 0 || s.sent.Load() < uint64(s.o.count) {
		text, ok, err := src.next(ctx)
		if err != nil || !ok {
			return err
		}
		if s.sent.Load() > 0 {
			if err := s.pause(ctx); err != nil {
				return err
			}
		}
		frames, err := s.frames(codec.KindData, text)
		if err != nil {
			return err
		}
		if err := s.sendKeyed(ctx, &r, partition.HashBytes(s.partitionKey(text)), frames); err != nil {
			return err
		}
	}
	return nil
}

// keyRouter picks a key's owner among a socket's peers, remembering the
// hash of each peer's identity.
type keyRouter struct {
	hashes map[*socket.Peer]uint64
}

func (r *keyRouter) owner(peers []*socket.Peer, kh uint64) *socket.Peer {
	var best *socket.Peer
	var bs uint64
	for _, p := range peers {
		select {
		case <-p.Done():
			delete(r.hashes, p)
			continue
		default:
		}
		h, ok := r.hashes[p]
		if !ok {
			h = partition.Hash(partition.PeerID(p))
			r.hashes[p] = h
		}
		if s := partition.Score(kh, h); best == nil || partition.Better(s, p.ID(), bs, best.ID()) {
			best, bs = p, s
		}
	}
	return best
}

// sendKeyed sends frames to the owner of the key hashing to kh, within
// --timeout as sendOne does.
func (s *session) sendKeyed(ctx context.Context, r *keyRouter, kh uint64, frames [][]byte) error {
	sock := s.socket()
	for {
		p := r.owner(sock.PeerList(), kh)
		if p == nil {
			if err := s.waitPeers(ctx, 1); err != nil {
				return err
			}
			continue
		}
		sctx, cancel := s.opContext(ctx)
		err := sock.SendTo(sctx, p, socket.Msg{Frames: frames, Priority: s.o.priority})
		cancel()
		switch {
		case err == nil:
			s.sent.Add(1)
			return nil
		case errors.Is(err, socket.ErrPeerLost):
			continue // its keys have another owner now
		case isTimeout(err) && ctx.Err() == nil:
			return s.noPeerError(fmt.Sprintf("the worker of message %d took nothing within %s", s.sent.Load()+1, s.o.timeout))
		}
		return err
	}
}
