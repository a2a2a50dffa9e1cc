# Convenience targets. The test command is ./test.sh, which needs no make.
GO ?= go

.PHONY: test
test:
	GO=$(GO) ./test.sh
