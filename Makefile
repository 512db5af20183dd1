# pocnet — see README.md.
SHELL := /bin/bash
GO    ?= go
GOBIN ?= $(shell $(GO) env GOPATH)/bin

# Code generators, pinned. `make tools` installs them with `go install`.
BUF_VERSION                ?= v1.75.0
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2

export PATH := $(GOBIN):$(PATH)

.PHONY: all build test test-short race vet lint generate generate-check tools demo bench fmt check clean

all: build

build:
	$(GO) build -o bin/ ./server/cmd/... ./client/cmd/... ./certs/cmd/...

tools:
	$(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

generate: tools
	buf lint
	buf generate

# generate-check regenerates into the tree and fails if anything changed.
generate-check: generate
	@if [[ -n "$$(git status --porcelain -- proto)" ]]; then \
		echo "generated code is stale; run 'make generate' and commit:"; git status --porcelain -- proto; exit 1; fi

lint: tools
	buf lint

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$bad" ]]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

# test is what CI runs: vet, then every test with the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 12m ./...

test-short:
	$(GO) test -count=1 -short ./...

check: generate-check lint test

demo:
	$(GO) run ./client/cmd/pocdemo

# demo-directory: five states govern their signed directory, live, with
# pocfed, pocnode and pocctl; no node is restarted.
.PHONY: demo-directory
demo-directory:
	$(GO) run ./client/cmd/pocdemo -scenario directory

bench:
	$(GO) test -run '^$$' -bench '^BenchmarkRelay$$' -benchtime 1x -timeout 20m ./internal/bench/...
	@echo "sealing, per envelope (sign + seal at the sender, verify + open at the recipient, receipts, 16 signed together):"
	$(GO) test -run '^$$' -bench . -benchtime 3000x ./internal/envelope/
	@echo "one writer's synced updates, the log zero-filled ahead and growing:"
	$(GO) test -run '^$$' -bench '^BenchmarkLoneUpdate$$' -benchtime 3000x ./internal/store/

clean:
	rm -rf bin _fed _demo
