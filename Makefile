# kiln's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/kiln-dev/kiln/internal/cli.Version=$(VERSION) -X github.com/kiln-dev/kiln/internal/cli.Commit=$(COMMIT)
BIN     := bin
# Per-package test timeout; the real-component tests build their tools on first use.
TEST_TIMEOUT ?= 60m

.PHONY: help build test deps tools generate verify e2e bench bench-bake fuzz quickstart clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

build: ## build bin/kiln
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/kiln ./cmd/kiln

deps: ## install the Debian packages the tests need (as root)
	hack/tools.sh deps >/dev/null

tools: deps ## build the outside tools the tests drive, cached in ~/.cache/kiln; bake the hardened image the VM tests share
	hack/tools.sh ignition >/dev/null
	hack/tools.sh kubernetes >/dev/null
	hack/tools.sh containerd >/dev/null
	hack/tools.sh node-images >/dev/null
	hack/tools.sh base-image >/dev/null
	hack/tools.sh packer >/dev/null
	hack/tools.sh packer-plugin-qemu >/dev/null
	hack/tools.sh packer-plugin-amazon >/dev/null
	hack/tools.sh packer-plugin-vsphere >/dev/null
	hack/tools.sh pxe-kernel >/dev/null
	hack/tools.sh baked-image >/dev/null

# The quickstart's cluster (./e2e) runs last and alone: the VM tests take turns already
# (testtool.ExclusiveVMs), but the other packages' compiles and tests beside its three TCG guests
# starved its control plane on 2 cores. The exit status is the first failure's.
test: tools ## run the whole test suite (real components included)
	status=0; \
	go test -count=1 -timeout $(TEST_TIMEOUT) $$(go list ./... | grep -vx 'github.com/kiln-dev/kiln/e2e') || status=$$?; \
	go test -count=1 -timeout $(TEST_TIMEOUT) ./e2e || { e2e=$$?; ((status)) || status=$$e2e; }; \
	exit $$status

generate: ## run every go:generate
	go generate ./...

verify: ## gofmt, go vet, go mod tidy and generated code are clean
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v /testdata/))" || { gofmt -l $$(git ls-files '*.go' | grep -v /testdata/); echo 'gofmt: run gofmt -w'; exit 1; }
	go vet ./...
	go mod tidy -diff
	@before=$$(git status --porcelain -uall; git diff); $(MAKE) -s generate; after=$$(git status --porcelain -uall; git diff); \
	  [ "$$before" = "$$after" ] || { git status --short; echo 'generated files were out of date: make generate changed them; commit the result'; exit 1; }

e2e: tools ## the quickstart end to end: the built kiln, then the real Ignition applies what it rendered
	go test -count=1 -v ./e2e

bench: ## benchmarks (figures are reported in README.md)
	go test -run '^$$' -bench . -benchmem ./...

bench-bake: tools ## one fresh real bake (packer build, QEMU with TCG, kiln-harden) on the base image, not the cached one; reports s/bake
	go test -run '^$$' -bench Bake -benchtime 1x -timeout 30m ./images/bake

fuzz: ## fuzz each target for FUZZTIME (default 30s)
	go test -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-30s} ./api/v1alpha1
	go test -run '^$$' -fuzz FuzzLint -fuzztime $${FUZZTIME:-30s} ./bootstrap/lint
	go test -run '^$$' -fuzz FuzzDecide -fuzztime $${FUZZTIME:-30s} ./onprem/pxe
	go test -run '^$$' -fuzz FuzzMatch -fuzztime $${FUZZTIME:-30s} ./onprem/pxe

quickstart: deps build ## kiln's main job on this machine: a cluster on local QEMU VMs that heals a killed node
	hack/quickstart.sh

clean: ## remove build output (the tool cache in ~/.cache/kiln stays)
	rm -rf $(BIN)
