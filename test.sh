#!/bin/sh
# The whole test suite: ./test.sh (the README's test command).
#
# Run as root on Debian it first installs what the interop, discovery and
# namespace tests talk to (python3-zmq, python3-msgpack, python3-zeroconf,
# libzmq3-dev and gcc for bench/, iproute2 and iputils-ping); elsewhere the
# tests that need them skip and say why. It needs only Go and a POSIX shell:
# no make.
set -eu
cd "$(dirname "$0")"
GO=${GO:-go}
DEBS="python3-zmq python3-msgpack python3-zeroconf python3-prometheus-client libzmq3-dev pkg-config iproute2 iputils-ping gcc"

have_deps() {
	/usr/bin/python3 -c 'import zmq, msgpack, zeroconf, prometheus_client' 2>/dev/null &&
		command -v ip >/dev/null && command -v ping >/dev/null &&
		command -v pkg-config >/dev/null && pkg-config --exists libzmq &&
		command -v gcc >/dev/null
}

if [ "$(id -u)" = 0 ] && ! have_deps; then
	echo "installing test dependencies: $DEBS"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $DEBS >/dev/null
fi

# ZPEER_TEST_LOAD=N runs the suite under load: N CPU-bound processes run
# beside the tests, as on a busy CI machine, and are killed when the script
# exits (./test.sh passes so on 2 cores with N=2).
load=${ZPEER_TEST_LOAD:-0}
case $load in
'' | *[!0-9]*)
	echo "ZPEER_TEST_LOAD must be a number of processes, not '$load'" >&2
	exit 2
	;;
esac
if [ "$load" -gt 0 ]; then
	hogs=""
	i=0
	while [ "$i" -lt "$load" ]; do
		sh -c 'while :; do :; done' &
		hogs="$hogs $!"
		i=$((i + 1))
	done
	trap 'kill $hogs 2>/dev/null' EXIT
	trap 'exit 130' INT TERM
	echo "== under load: $load CPU-bound processes beside the tests"
fi

echo "== gofmt, go vet"
out=$(gofmt -l .)
if [ -n "$out" ]; then
	echo "gofmt needed:"
	echo "$out"
	exit 1
fi
$GO vet ./...
(cd bench && $GO vet ./...)

# The documentation tests build small programs offline (GOPROXY=off) with
# -mod=mod, which reads the go.mod of every module in zpeer's module graph,
# old versions a build of zpeer itself never fetches: fetch them now.
echo "== module graph"
$GO list -m all >/dev/null

echo "== go test -race ./..."
$GO test -race -count=1 -timeout 45m ./...

echo "== use-after-Free checks: go test -tags zpeerdebug (see socket.Msg)"
$GO vet -tags zpeerdebug ./socket/
$GO test -count=1 -tags zpeerdebug ./socket/ ./pattern/

echo "== crypto and CURVE without the AVX2 kernels: go test -tags purego"
$GO vet -tags purego ./internal/... ./socket/
$GO test -count=1 -tags purego ./internal/crypto/salsa20/ ./internal/crypto/poly1305/ ./internal/testutil/
$GO test -count=1 -tags purego -run Curve ./socket/

echo "== bench smoke"
(cd bench && $GO test -count=1 -timeout 15m -run Smoke ./...)
echo "== all tests passed"
