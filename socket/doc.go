// Package socket is zpeer's socket engine: the ZeroMQ socket types REQ, REP,
// PUB, SUB, PUSH, PULL, DEALER, ROUTER, PAIR, XPUB and XSUB with the
// semantics of ZeroMQ RFC 28 (REQ/REP), 29 (PUB/SUB), 30 (PUSH/PULL) and 31
// (PAIR), and libzmq 4.3's XPUB and XSUB, spoken over ZMTP 3 so that any
// libzmq, pyzmq, JeroMQ or zmq4 peer of the matching type can talk to them.
// Proxy joins two sockets as libzmq's zmq_proxy_steerable does (the pub/sub
// forwarder, the request queue, the pipeline streamer), and LastValueCache
// gives late subscribers each topic's last message.
//
// The ZMTP greeting and security handshake come from
// github.com/go-zeromq/zmq4 (zmq4.Open, zmq4.Security). Everything after the
// handshake is this package's: one pipe per connected peer with a bounded
// send queue (the high-water mark), a writer goroutine that coalesces queued
// frames into few write system calls, a reader goroutine that checks every
// frame's declared size against the socket's limit before allocating, and
// the routing of each socket type (round-robin over ready peers for PUSH,
// REQ and DEALER; fair-queueing for PULL and the receiving side of every
// type; publisher-side prefix filtering for PUB; identity routing for
// ROUTER).
//
// Endpoints are tcp://host:port (port 0 or * picks a free port; Bind returns
// the real endpoint), ipc:///path (a Unix domain socket) and inproc://name
// (sockets of one process, messages handed over in memory with no network
// and no handshake: the receiver's receive mark is the
// high-water mark, Close is immediate, and a socket may connect before the
// name is bound). A socket binds
// and connects any number of endpoints. Connect is asynchronous: connecting
// to a peer that is not up yet is normal, and every connected endpoint is
// re-dialled with exponential backoff and jitter for as long as it stays
// connected.
//
// Delivery semantics, per type:
//
//   - PUSH, REQ, DEALER: Send picks the next ready peer round-robin; a peer
//     is ready while its queue is below the send high-water mark. When no
//     peer is ready Send blocks until one is or the context ends, or, with
//     WithNoBlock, fails at once with ErrWouldBlock.
//   - PUB, XPUB: Send never blocks. A subscriber whose queue is full misses
//     the message; the drop is counted in Stats (and per peer). A publisher
//     keeps a set of prefixes per subscriber (WithSubscriptionLimits bounds
//     it). XPUB also hands its subscribers' subscription messages to Recv
//     (see XPubOptions for verbose and manual modes).
//   - XSUB: Send takes subscription messages (0x01 or 0x00, then the
//     prefix) and passes the rest to every publisher; its subscriptions go
//     to every publisher that attaches. PAIR: one peer; Send waits for it.
//   - REP, ROUTER: replies go to the peer that asked (REP) or the peer named
//     by the first frame (ROUTER); an unknown or departed peer is an error
//     (ErrNoSuchPeer), never a silent misroute.
//   - Receiving (PULL, SUB, REP, DEALER, ROUTER, REQ): messages are
//     fair-queued across peers, at most the receive high-water mark per peer
//     in memory; a peer beyond that is back-pressured through TCP.
//
// The socket owns its peers. Each connection is a Peer handle (PeerList,
// RecvFrom); WithPeerHooks has the engine call the owner synchronously as a
// peer attaches (before any of its messages is received or anything is
// routed to it), detaches, and gets room to send again; SendTo sends to a
// chosen peer, bypassing load balancing. A layer above that must pick its
// peer (fail-over, credit) does it on one socket with these, without
// learning about connections from Events after the fact.
//
// Memory is bounded per peer: the send and receive high-water marks count
// messages (WithSendHWM, WithRecvHWM) and bytes (WithHWMBytes), and a peer
// that announces a frame over WithMaxMsgSize is dropped before anything is
// allocated for it. Received frames up to 1 KiB are carved from shared 32 KiB
// slabs and larger ones come from a pool; Msg.Free gives a message's share
// back, so that a receiver that frees what it is done with reuses the same
// memory instead of making garbage (at 1 KiB, three times the throughput).
// A sender reuses the memory of its large frames the same way: a Buffer
// from the same pools, sent as Msg.Buf, is held by the socket until the
// frames are written and goes back to the pool when its last reference is
// released.
//
// Security: NULL (the default), PLAIN (WithSecurity with zmq4's
// security/plain, and WithPlainUsers to check users) and CURVE (RFC 26, as
// libzmq 4.3 speaks it: WithCurveServer, WithCurveClient), with access
// control on accepted connections: address filters checked before any byte
// is read (WithAllow, WithDeny), trusted client keys (WithTrust, LoadTrust)
// and an Authenticator, the Go counterpart of ZAP. Certificates are the
// files czmq and pyzmq write (ReadCertificate, WriteCertificate). See
// docs/security.md.
//
// Options and errors (the convention of zpeer's three library packages):
// a constructor takes typed options, applied in order over documented
// defaults, nil skipped, the first error returned; every option error
// wraps ErrOption (errors.Is), and other failures wrap the sentinel errors
// of errors.go. socket's Option is func(*Options) error with Options
// exported, unlike pattern's and discovery's: Options is a flat set of
// engine settings whose defaults DefaultOptions documents, and a caller
// may write an Option of its own over it. WithPeerHooks adds to the hooks
// set before it, so a layer above (pattern) appends its hooks to a user's
// without reading the user's options.
//
// What this package is not: it does not know about envelopes, typed values,
// acknowledgements or discovery. Those live in codec/, pattern/ and
// discovery/, on top of it.
package socket

// Locks and their order (read this before changing anything that locks).
//
// A field a mutex guards says so ("guarded by mu") on its line or on the
// comment opening its block; fields set before an object is shared and
// never written again need no lock. The mutexes, outermost first: a
// goroutine holding one of them takes only mutexes further down the list.
//
//  1. LastValueCache.mu and xsubProto.smu (serialising XSUB subscription
//     sends) are held across a Send, so everything a Send takes comes
//     after them.
//  2. pipe.attachMu orders one pipe's attach, Ready hook and detach. The
//     owner's PeerHooks (Attach, Ready, Detach) and the protocol's attach
//     and detach run holding it: a hook may call what takes the locks
//     below (SendTo, PeerList), never what waits for its own pipe's
//     detach.
//  3. Socket.mu guards the socket's connections (pipes, listeners,
//     dialers, handshakes in progress, closed). attach and detach set
//     pipe.attached holding attachMu and then mu. Under mu: the PAIR
//     protocol's mu (admit), the trusted KeySet's mu, the inproc registry's
//     mu (Bind) and pipe.wmu (Stats and detach read a pipe's send
//     counters: an inproc link's, or what a network pipe queued).
//  4. The protocol's own mutex: lb.mu, routerProto.mu, pubProto.mu,
//     subProto.mu, xpubProto.mu, xsubProto.mu, pairProto.mu, repProto.mu,
//     reqProto.rmu. Taken under attachMu (the protocol's attach and
//     detach). Under it: pipe.wmu (subProto and xsubProto queue
//     subscriptions, routerProto writes routeID) and a peer's
//     subscriptions.mu (xpubProto).
//  5. pipe.wmu guards a pipe's send side (writer.go); flushUnlocking
//     releases it around each write and returns without it. Under it: the
//     receiving socket's fairQueue.mu (an inproc sender looks at the other
//     socket's fair queue) and Socket.readyMu.
//  6. fairQueue.mu guards every pipe's inbox and the active list. Under
//     it: Socket.readyMu (of an inproc sender's socket, to wake it).
//  7. Leaves, under which nothing else is taken: Socket.readyMu,
//     subscriptions.mu, changeSignal.mu (subsChanged), admission.mu,
//     KeySet.mu, Proxy.mu and the inproc registry's mu.
