#!/usr/bin/python3
"""A plain pyzmq program, with no zpeer code in it: a sensor that publishes
its readings as two frames, [name, value], and then asks for the last
temperature over REQ/REP. The bridge example talks to it in raw mode.

    /usr/bin/python3 sensor.py --connect tcp://127.0.0.1:5560 --query tcp://127.0.0.1:5561
"""
import argparse
import random
import time

import zmq

ap = argparse.ArgumentParser()
ap.add_argument("--connect", required=True, help="the bridge's SUB endpoint")
ap.add_argument("--query", help="the bridge's REP endpoint, asked at the end")
ap.add_argument("--count", type=int, default=100, help="readings to publish")
ap.add_argument("--interval", type=float, default=0.02, help="seconds between readings")
args = ap.parse_args()

ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.connect(args.connect)
temp = 21.0
for i in range(args.count):
    temp += random.uniform(-0.1, 0.1)
    pub.send_multipart([b"temp", b"%.2f" % temp])
    pub.send_multipart([b"humidity", b"%d" % random.randint(40, 60)])
    time.sleep(args.interval)
print("sensor: published %d readings" % args.count, flush=True)

if args.query:
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 5000)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(args.query)
    req.send(b"temp")
    print("sensor: the bridge says temp=%s" % req.recv().decode(), flush=True)
    req.close()
pub.close(linger=1000)
ctx.term()
