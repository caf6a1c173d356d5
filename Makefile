.PHONY: build test conformance e2e lint bench tools

COMMIT := $(shell git rev-parse HEAD 2>/dev/null)

build:
	go build -ldflags "-X github.com/outpost-registry/outpost/internal/cli.commit=$(COMMIT)" -o bin/outpost ./cmd/outpost

tools:
	bash scripts/install-tools.sh

test:
	bash scripts/test.sh

conformance: build tools
	bash scripts/conformance.sh

e2e: build tools
	OUTPOST_E2E=1 OUTPOST_BIN=$(CURDIR)/bin/outpost PATH=$(CURDIR)/.tools/bin:$$PATH go test -race -count=1 ./test/e2e/...

bench:
	bash scripts/bench.sh

lint: tools
	gofmt -l cmd internal test
	go vet ./...
	.tools/bin/staticcheck ./...
