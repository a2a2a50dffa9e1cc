#!/usr/bin/python3
"""A libzmq peer (through pyzmq) for socket/'s interop tests.

It plays one socket role against a zpeer socket and reports what happened as
JSON lines on stdout, one object per line with an "event" key:

  {"event": "bound", "endpoint": "tcp://127.0.0.1:41234"}   after --bind
  {"event": "synced"}                                      sub: saw a sync message on each topic
  {"event": "done", "received": N, "bad": [...], ...}      the role finished
  {"event": "error", "msg": "..."}                          then exit status 1

The messages exchanged are the ones messages() builds; interop_test.go builds
the same list (interopMsgs). Every receive has a timeout, so the script never
hangs: the Go test kills it at its own deadline anyway.

Usage: zmqpeer.py ROLE (--bind EP | --connect EP ...) [--count N] [--specials]
       [--topics a,b] [--identity ID] [--expect-id ID]
       [--hb-ivl MS --hb-timeout MS --hb-ttl MS]
       [--curve-cert SECRET.key_secret] [--curve-server-cert PUBLIC.key]
       [--curve-trust DIR]

CURVE: --curve-cert alone makes the socket a CURVE server with that
certificate's keys; with --curve-server-cert it is a CURVE client of that
server (a client without --curve-cert uses a fresh key pair).
--curve-trust lets in only the clients whose public certificates are in DIR
(zmq.auth's ThreadAuthenticator, that is ZAP).
"""

import argparse
import json
import sys

import zmq
import zmq.auth
import zmq.auth.thread

TIMEOUT_MS = 15000


def out(**kw):
    print(json.dumps(kw), flush=True)


def messages(n, specials):
    ms = [[b"msg", str(i).encode()] for i in range(n)]
    if specials:
        ms.append([b"multi", b"", b"third", b"L" * 300])  # empty and long frames
        ms.append([b"big", bytes(range(256)) * 4096])      # 1 MiB frame
        ms.append([b""])                                  # a lone empty frame
    return ms


def show(frames):
    """A short printable form of a message for error reports."""
    return [f[:32].hex() + ("..(%d)" % len(f) if len(f) > 32 else "") for f in frames]


def recv(sock):
    try:
        return sock.recv_multipart()
    except zmq.Again:
        raise SystemExit(fail("receive timed out after %d ms" % TIMEOUT_MS))


def fail(msg):
    out(event="error", msg=msg)
    return 1


def role_rep(sock, a):
    want, bad = messages(a.count, a.specials), []
    for i, w in enumerate(want):
        m = recv(sock)
        if m != w:
            bad.append({"i": i, "got": show(m)})
        sock.send_multipart(m)
    out(event="done", received=len(want), bad=bad)


def role_req(sock, a):
    want, bad = messages(a.count, a.specials), []
    for i, w in enumerate(want):
        sock.send_multipart(w)
        m = recv(sock)
        if m != w:
            bad.append({"i": i, "got": show(m)})
    out(event="done", received=len(want), bad=bad)


def role_pull(sock, a):
    if a.count < 0:  # until an END frame: the load-balancing test
        n = 0
        while recv(sock) != [b"END"]:
            n += 1
        out(event="done", received=n, bad=[])
        return
    want, bad = messages(a.count, a.specials), []
    for i, w in enumerate(want):
        m = recv(sock)
        if m != w:
            bad.append({"i": i, "got": show(m)})
    out(event="done", received=len(want), bad=bad)


def role_push(sock, a):
    for w in messages(a.count, a.specials):
        sock.send_multipart(w)
    out(event="done", received=0, bad=[])


def role_pub(sock, a):
    """Publishes [topic, b"sync"] on every topic until a line arrives on
    stdin (the subscriber is ready), then count messages per topic, one
    1 MiB three-frame message per topic and [topic, b"end"]."""
    topics = [t.encode() for t in a.topics.split(",")]
    poller = zmq.Poller()
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    for _ in range(TIMEOUT_MS // 10):
        for t in topics:
            sock.send_multipart([t, b"sync"])
        if poller.poll(10):
            sys.stdin.readline()
            break
    else:
        raise SystemExit(fail("no go-ahead on stdin"))
    for i in range(a.count):
        for t in topics:
            sock.send_multipart([t, str(i).encode()])
    for t in topics:
        sock.send_multipart([t, b"", bytes(range(256)) * 4096])
        sock.send_multipart([t, b"end"])
    out(event="done", received=0, bad=[])


def role_sub(sock, a):
    """Subscribes to --topics; reports synced once it has seen a sync message
    on each, then counts data per topic until it has seen end on each."""
    topics = [t.encode() for t in a.topics.split(",")]
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t)
    synced, ended = set(), set()
    counts, bad, foreign = {}, [], []
    while len(ended) < len(topics):
        m = recv(sock)
        t = m[0]
        match = [s for s in topics if t.startswith(s)]
        if not match:
            foreign.append(show(m))
            continue
        if m[1:] == [b"sync"]:
            if len(synced) < len(topics):
                synced.add(t)
                if len(synced) == len(topics):
                    out(event="synced")
            continue
        if m[1:] == [b"end"]:
            ended.add(t)
            continue
        n = counts.get(t.decode(), 0)
        counts[t.decode()] = n + 1
        if len(m) == 3 and m[1] == b"" and m[2] == bytes(range(256)) * 4096:
            continue
        if len(m) != 2 or m[1] != str(n).encode():
            bad.append(show(m))
    out(event="done", received=sum(counts.values()), bad=bad, counts=counts, foreign=foreign)


def role_router(sock, a):
    want, bad, ids = messages(a.count, a.specials), [], []
    for i, w in enumerate(want):
        m = recv(sock)
        rid, body = m[0], m[1:]
        if rid.hex() not in ids:
            ids.append(rid.hex())
        if a.expect_id is not None and rid != a.expect_id.encode():
            bad.append({"i": i, "id": rid.hex()})
        if body != w:
            bad.append({"i": i, "got": show(body)})
        sock.send_multipart(m)
    out(event="done", received=len(want), bad=bad, ids=ids)


def role_dealer(sock, a):
    want, bad = messages(a.count, a.specials), []
    for i, w in enumerate(want):
        sock.send_multipart(w)
        m = recv(sock)
        if m != w:
            bad.append({"i": i, "got": show(m)})
    out(event="done", received=len(want), bad=bad)


def role_pair(sock, a):
    """Echoes count messages (messages()) back to its peer."""
    want, bad = messages(a.count, a.specials), []
    for i, w in enumerate(want):
        m = recv(sock)
        if m != w:
            bad.append({"i": i, "got": show(m)})
        sock.send_multipart(m)
    out(event="done", received=len(want), bad=bad)


def role_xpub(sock, a):
    """A verbose XPUB: reports each subscription message as
    {"event": "sub", "msg": "+topic" or "-topic"}; once every --topics entry
    is subscribed, publishes count messages per topic (and on "other", which
    nobody subscribed to) then [topic, b"end"]; then waits for a cancel of
    each topic and reports done with every subscription message seen."""
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    topics = [t.encode() for t in a.topics.split(",")]
    seen, subscribed, cancelled = [], set(), set()

    def take():
        m = recv(sock)
        if len(m) != 1 or not m[0] or m[0][0] > 1:
            return
        ev = ("+" if m[0][0] == 1 else "-") + m[0][1:].decode()
        seen.append(ev)
        out(event="sub", msg=ev)
        (subscribed if m[0][0] == 1 else cancelled).add(m[0][1:])

    while not subscribed.issuperset(topics):
        take()
    for i in range(a.count):
        for t in topics + [b"other"]:
            sock.send_multipart([t, str(i).encode()])
    for t in topics:
        sock.send_multipart([t, b"end"])
    while not cancelled.issuperset(topics):
        take()
    out(event="done", received=len(seen), bad=[], ids=seen)


def role_xsub(sock, a):
    """Subscribes to --topics by sending subscription messages, sends one
    upstream message [b"up", b"hello"], counts data per topic until [topic,
    b"end"] on each, then cancels each topic and reports done."""
    topics = [t.encode() for t in a.topics.split(",")]
    for t in topics:
        sock.send(b"\x01" + t)
    sock.send_multipart([b"up", b"hello"])
    ended, counts, bad, foreign = set(), {}, [], []
    while len(ended) < len(topics):
        m = recv(sock)
        t = m[0]
        if not any(t.startswith(s) for s in topics):
            foreign.append(show(m))
            continue
        if m[1:] == [b"end"]:
            ended.add(t)
            continue
        n = counts.get(t.decode(), 0)
        counts[t.decode()] = n + 1
        if m[1:] != [str(n).encode()]:
            bad.append(show(m))
    for t in topics:
        sock.send(b"\x00" + t)
    out(event="done", received=sum(counts.values()), bad=bad, counts=counts, foreign=foreign)


def run_proxy(a):
    """zmq_proxy between an XSUB and a verbose XPUB, both bound; reports
    {"event": "bound", "ids": [xsub endpoint, xpub endpoint]} and runs
    until killed."""
    ctx = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
    xsub.bind("tcp://127.0.0.1:*")
    xpub.bind("tcp://127.0.0.1:*")
    out(event="bound", ids=[s.getsockopt(zmq.LAST_ENDPOINT).decode() for s in (xsub, xpub)])
    zmq.proxy(xsub, xpub)
    return 0


ROLES = {
    "rep": (zmq.REP, role_rep),
    "req": (zmq.REQ, role_req),
    "pull": (zmq.PULL, role_pull),
    "push": (zmq.PUSH, role_push),
    "pub": (zmq.PUB, role_pub),
    "sub": (zmq.SUB, role_sub),
    "router": (zmq.ROUTER, role_router),
    "dealer": (zmq.DEALER, role_dealer),
    "pair": (zmq.PAIR, role_pair),
    "xpub": (zmq.XPUB, role_xpub),
    "xsub": (zmq.XSUB, role_xsub),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=sorted(ROLES) + ["proxy"])
    p.add_argument("--bind")
    p.add_argument("--connect", action="append", default=[])
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--specials", action="store_true")
    p.add_argument("--topics", default="")
    p.add_argument("--identity")
    p.add_argument("--expect-id")
    p.add_argument("--hb-ivl", type=int, default=0)
    p.add_argument("--hb-timeout", type=int, default=0)
    p.add_argument("--hb-ttl", type=int, default=0)
    p.add_argument("--curve-cert")
    p.add_argument("--curve-server-cert")
    p.add_argument("--curve-trust")
    a = p.parse_args()
    if a.role == "proxy":
        return run_proxy(a)

    typ, fn = ROLES[a.role]
    ctx = zmq.Context()
    sock = ctx.socket(typ)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    if a.identity:
        sock.setsockopt(zmq.ROUTING_ID, a.identity.encode())
    if a.hb_ivl:
        sock.setsockopt(zmq.HEARTBEAT_IVL, a.hb_ivl)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, a.hb_timeout or a.hb_ivl)
        if a.hb_ttl:
            sock.setsockopt(zmq.HEARTBEAT_TTL, a.hb_ttl)
    auth = None
    if a.curve_trust:
        auth = zmq.auth.thread.ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=a.curve_trust)
    if a.curve_server_cert:
        server_public, _ = zmq.auth.load_certificate(a.curve_server_cert)
        if a.curve_cert:
            public, secret = zmq.auth.load_certificate(a.curve_cert)
        else:
            public, secret = zmq.curve_keypair()
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_serverkey = server_public
    elif a.curve_cert:
        public, secret = zmq.auth.load_certificate(a.curve_cert)
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_server = True
    if a.bind:
        sock.bind(a.bind)
        out(event="bound", endpoint=sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    for ep in a.connect:
        sock.connect(ep)
    try:
        fn(sock, a)
    except zmq.Again:
        return fail("send timed out after %d ms" % TIMEOUT_MS)
    finally:
        sock.close()
        if auth is not None:
            auth.stop()
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
