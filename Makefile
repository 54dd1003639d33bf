# Build, test and check lbt. "make deps" installs PostgreSQL, which the
# tests and the demo need, when no server is found, and the S3-compatible
# server the object-storage tests run against (versitygw).

SHELL := /bin/bash

GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# staticcheck 2026.2.2, a release that supports go 1.26.
STATICCHECK_VERSION := v0.8.2
BENCHTIME ?= 1x
# versitygw, the S3-compatible server of the object-storage tests
# (Apache-2.0), built from the Go module proxy into bin/tools, where
# test/s3test looks for it.
VERSITYGW_VERSION := v1.8.0
TOOLS_BIN := $(CURDIR)/bin/tools
# apt-get needs root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build test race bench bench-scale soak lint demo deps deps-postgres deps-versitygw clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/lbt ./cmd/lbt

# The object-storage tests run against a real versitygw: deps-versitygw
# installs it on the first run (about two minutes) and is a no-op after.
test: deps-versitygw
	$(GO) test -count=1 -timeout 20m ./...

# The race detector needs cgo, hence a C compiler. Of the end-to-end tests in
# test/, only those that run the daemon in-process are included: the others
# drive child processes the detector does not see.
RACE_E2E := TestBackup_ArchivesWorkloadExactly|TestBackup_IdleSlot|TestBackup_LostSlot
race:
	@if ! command -v gcc >/dev/null 2>&1; then \
		echo "race: skipped: no gcc, and the race detector needs cgo"; \
		exit 0; \
	fi; \
	pkgs="$$($(GO) list ./... | grep -v -E '^lbt/test(/|$$)') lbt/test/pgtest"; \
	echo CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $$pkgs; \
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $$pkgs && \
	echo "race: the daemon in-process (reader and archiver goroutines):" && \
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./test -run '$(RACE_E2E)'

bench:
	@if [ -d test/bench ]; then \
		$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./test/bench/...; \
	else \
		echo "bench: no benchmarks yet (test/bench does not exist)"; \
	fi

# A restore of a table larger than PostgreSQL's 1 GB string limit, checked
# against the source's checksum, with timings against COPY, pg_dump and
# pg_restore; LBT_BENCH_SCALE_MB sets the size (default 1280: 1.25 GB of
# text in rows of 1 KB), LBT_BENCH_SCALE_RUNS the rounds (3; 0: the restore
# alone), LBT_BENCH_SCALE_LOWDISK=1 the low-disk mode (chosen by itself
# when the disk lacks room; see docs/RESTORE.md). Then restore's
# peak RSS with LBT_BENCH_SPILL_KEYS touched keys (10 million here; make
# bench runs 2 million).
bench-scale:
	$(GO) test -tags scale -run '^$$' -bench 'BenchmarkRestoreScale|BenchmarkSyntheticScale' -benchtime 1x -timeout 2h ./test/bench/
	LBT_BENCH_SPILL_KEYS=$${LBT_BENCH_SPILL_KEYS:-10000000} LBT_BENCH_SPILL_INMEMORY=$${LBT_BENCH_SPILL_INMEMORY:-0} \
	LBT_BENCH_SPILL_1M=$${LBT_BENCH_SPILL_1M:-0} \
		$(GO) test -run '^$$' -bench BenchmarkRestoreMemory -benchtime 1x -timeout 2h ./test/bench/

# The crash simulation of test/crashsim_test.go, through many more crashes.
CRASH_POINTS ?= 200
# Storms that make test's ten minutes have no room for are built with the
# soak tag.
soak:
	LBT_CRASH_POINTS=$(CRASH_POINTS) $(GO) test -count=1 -timeout 2h ./test -run 'TestCrashSim_ArchiveRestoresExactlyAfterEveryCrash'
	$(GO) test -tags soak -count=1 -timeout 2h ./test -run 'TestEncryption_KillNineUnderLoad|TestEncryption_StoreOutage|TestSoak_'
	@if [ -d test/soak ]; then \
		$(GO) test -count=1 -v -timeout 2h ./test/soak/...; \
	else \
		echo "soak: no soak tests yet (test/soak does not exist)"; \
	fi

lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "lint: gofmt wants to change:"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

demo:
	bash scripts/demo.sh

deps: deps-postgres deps-versitygw

# Looks where test/pgtest looks, in the same order.
deps-postgres:
	@if [ -n "$$LBT_PG_BINDIR" ] && [ -x "$$LBT_PG_BINDIR/postgres" ]; then \
		echo "deps: PostgreSQL server found: $$LBT_PG_BINDIR/postgres (LBT_PG_BINDIR)"; \
	elif command -v postgres >/dev/null 2>&1; then \
		echo "deps: PostgreSQL server found: $$(command -v postgres)"; \
	elif found="$$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1)" && [ -n "$$found" ]; then \
		echo "deps: PostgreSQL server found: $$found"; \
	else \
		echo "deps: no PostgreSQL server found; installing it with apt-get"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib; \
	fi

# Skipped when bin/tools/versitygw is there at the pinned module version;
# its --version prints only "git", so go version -m tells.
deps-versitygw:
	@gw="$(TOOLS_BIN)/versitygw"; \
	have="$$( [ -x "$$gw" ] && $(GO) version -m "$$gw" 2>/dev/null | awk '$$1 == "mod" && $$2 == "github.com/versity/versitygw" { print $$3 }')"; \
	if [ "$$have" = "$(VERSITYGW_VERSION)" ]; then \
		echo "deps: versitygw $(VERSITYGW_VERSION) found: $$gw"; \
	else \
		echo "deps: installing versitygw $(VERSITYGW_VERSION) into $(TOOLS_BIN)$${have:+ (found $$have)}"; \
		GOBIN="$(TOOLS_BIN)" $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
	fi

clean:
	rm -rf bin demo-data
	rm -f coverage.out coverage.html *.coverprofile
