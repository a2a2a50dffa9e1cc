# The two commands of the README:
#   go run ./cmd/zpeer demo    the main job
#   make test                  the tests
# `make test` installs the Debian packages the interop and discovery tests
# talk to (python3-zmq, python3-msgpack, python3-zeroconf, libzmq3-dev for
# bench/, iproute2 and iputils-ping for the namespace tests) when it runs as root and they
# are missing; elsewhere those tests skip and say why.

GO ?= go
DEBS = python3-zmq python3-msgpack python3-zeroconf libzmq3-dev pkg-config iproute2 iputils-ping gcc

.PHONY: test deps check unit bench-smoke

test: deps check unit bench-smoke

deps:
	@if [ "$$(id -u)" = 0 ] && ! { /usr/bin/python3 -c 'import zmq, msgpack, zeroconf' 2>/dev/null && command -v ip >/dev/null && command -v ping >/dev/null && pkg-config --exists libzmq; }; then \
		echo "installing test dependencies: $(DEBS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS); \
	fi

check:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 45m ./...

bench-smoke:
	cd bench && $(GO) test -count=1 -timeout 15m -run Smoke ./...
