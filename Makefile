# psync-proxy: `make demo` runs the main job end to end on loopback; `make test` runs every test.
GO      ?= go
BIN     := bin/psync-proxy
PKGS    := ./...

.PHONY: all build deps compat test vet fuzz fuzz-ci bench bench-go dashboard demo docker clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/psync-proxy

# deps installs what the tests and the demo run: redis-server, redis-cli and redis-benchmark
# (Debian's redis-server package; 7.0.x on bookworm).
deps:
	@if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then \
		echo "installing redis-server and redis-tools"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools >/dev/null; \
	fi
	@redis-server --version

# compat builds the reference servers (Redis 8.8.0, Valkey 9.0.4) from ../shared/compat once,
# into a cache (1 to 3 minutes each on 2 cores the first time; build.sh installs a C toolchain
# if missing). The tests would build them on first use; building here keeps that out of their
# timeouts. Without ../shared/compat the tests that need them skip.
COMPAT := ../shared/compat/build.sh
compat:
	@if [ -x $(COMPAT) ]; then \
		for s in redis-8.8.0 valkey-9.0.4; do $(COMPAT) $$s >/dev/null || exit 1; done; \
	else echo "no $(COMPAT): the tests with Redis 8.8 and Valkey 9.0 will skip"; fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

test: deps vet compat
	$(GO) test -race -count=1 -timeout 18m $(PKGS)

# fuzz runs each fuzz target for FUZZTIME (seed corpora already run in `make test`);
# `make fuzz FUZZTIME=10m` is the longer run. fuzz-ci is the short one CI runs after the tests.
FUZZTIME ?= 30s
FUZZPKGS := ./resp/ ./proxy/ ./proxy/upstream/ ./internal/redisconf/
fuzz:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			echo "== $$p $$t"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$p || exit 1; \
		done; \
	done

fuzz-ci:
	$(MAKE) fuzz FUZZTIME=10s

# bench runs every scenario of the harness, direct, through a chained replica and through the
# proxy, on loopback; BENCHFLAGS passes options, e.g. BENCHFLAGS='-scenarios steady,storm
# -reps 3' or '-quick'.
BENCHFLAGS ?=
bench: deps
	$(GO) run ./bench $(BENCHFLAGS)

# bench-go runs the Go micro-benchmarks (backlog, stream scanner) beside a plain copy.
bench-go:
	$(GO) test -run='^$$' -bench=. -benchtime=2s ./backlog/ ./resp/

# dashboard renders docs/dashboard/dashboard.png from a real 7-minute run, the dashboard's
# queries evaluated by a real Prometheus (Debian's prometheus package).
dashboard: deps
	@command -v prometheus >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	$(GO) run ./bench/dashboard

demo: deps build
	bash docs/demo.sh

docker:
	docker build -t psync-proxy:$$(git describe --always --dirty 2>/dev/null || echo dev) .

clean:
	rm -rf bin
