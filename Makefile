# jupiter - Redis sharding proxy. `make` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The release build: the Dockerfile runs exactly this command (with /out/jupiter).
BUILD     = CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
# The test command (README). -race: the suite is concurrency-heavy, and with
# the race detector it still runs well under the 15-minute budget on 2 cores.
TESTFLAGS ?= -race -count=1 -timeout 40m
FUZZTIME  ?= 10s
# staticcheck 2026.2.2: the first releases that understand Go 1.26 are 2026.x.
STATICCHECK_VERSION ?= v0.8.2

.PHONY: help build run test bench bench-syscalls bench-cluster membench soak dashboard lint fuzz proto tidy-check clean docker

help: ## list the targets
	@echo "usage: make <target> [VAR=value]"
	@echo
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## /{printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "variables: VERSION=$(VERSION) FUZZTIME=$(FUZZTIME) TESTFLAGS='$(TESTFLAGS)'"
	@echo "           make run: LISTEN=:6379 ADMIN_LISTEN=:9090 REDIS_PORTS='7001 7002 7003' ARGS='<serve flags>'"

build: ## build bin/jupiter (static, -trimpath, version stamped; same command as the Dockerfile)
	$(BUILD) -o bin/jupiter ./cmd/jupiter

run: ## run jupiter on :6379 (admin :9090) in front of 3 local redis-servers; Ctrl-C stops all
	@scripts/run.sh $(ARGS)

test: ## THE test command: install test deps (scripts/deps.sh), then go test -race ./...
	scripts/deps.sh
	$(GO) test $(TESTFLAGS) ./...

bench: ## anchors (redis-benchmark: direct / twemproxy / jupiter), Go micro-benchmarks, membench
	scripts/bench.sh

bench-syscalls: ## syscalls and user/sys CPU per command: jupiter vs predixy vs twemproxy (perf or strace)
	scripts/syscalls.sh

bench-cluster: ## control plane at scale: 100 in-process members on the emulator (docs/scale.md; MEMBERS=100 CHANGES=10)
	scripts/deps.sh
	grep -m1 'model name' /proc/cpuinfo || true
	JUPITER_SCALE_MEMBERS=$(or $(MEMBERS),100) JUPITER_SCALE_CHANGES=$(or $(CHANGES),10) \
		$(GO) test ./internal/cluster -run '^$$' -bench '^BenchmarkClusterScale$$' -benchtime 1x -timeout 40m

membench: ## memory per idle client connection: jupiter vs plain redcon vs twemproxy
	scripts/membench.sh

soak: ## bounded load (SOAK_DURATION, default 2m) with a backend restart; checks goroutines and RSS return
	test/soak/run.sh

dashboard: ## redraw docs/dashboard.png from a recorded run (emulator cluster under redis-benchmark, an ADD; docs/dashboard.md)
	scripts/dashboard-render.sh

lint: ## gofmt -l (must be empty), go vet, staticcheck (installed if missing), shellcheck (if installed)
	STATICCHECK_VERSION=$(STATICCHECK_VERSION) scripts/lint.sh

fuzz: ## run every Fuzz* target for FUZZTIME each (default 10s)
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

proto: ## regenerate proto/v1/*.pb.go (proto/gen.sh)
	proto/gen.sh

tidy-check: ## fail if go.mod/go.sum are not tidy (go mod tidy -diff)
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

docker: ## docker build -t jupiter:VERSION . (needs a Docker engine; none on the dev machines)
	docker build --build-arg VERSION=$(VERSION) -t jupiter:$(VERSION) .

clean: ## remove bin/ and the scratch dirs of make bench/membench
	rm -rf bin /tmp/jupiter-bench /tmp/jupiter-membench
