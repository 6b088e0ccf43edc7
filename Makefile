# flowlens — `make run` builds and starts the collector on the embedded
# store; `make test` runs every test. Both install what they need.
SHELL := bash
GO ?= go
CACHE ?= $(CURDIR)/.cache
CHDB_VERSION ?= 26.5.3
CHDB_LIB_PATH ?= $(CACHE)/chdb/$(CHDB_VERSION)/libchdb.so
export CHDB_LIB_PATH
# A count, not a duration: go1.26's fuzz coordinator can report a duration
# running out as "context deadline exceeded" (golang/go#75804, fixed in 1.27).
FUZZTIME ?= 50000x
BIN := bin/flowlens
# Debian packages the integration tests drive (command:package).
TEST_DEBS := curl:curl softflowd:softflowd pmacctd:pmacct tshark:tshark tcpreplay:tcpreplay ndpiReader:libndpi-bin chromium:chromium
BENCH_DEBS := nfcapd:nfdump ndpiReader:libndpi-bin

.PHONY: console console-speed docs dpi-accuracy generate lab-test compose-check help build run test test-unit fuzz fuzz-short bench bench-e2e lint chdb deps-test clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/flowlens
	$(GO) build -o $(BIN) ./cmd/flowlens

chdb: $(CHDB_LIB_PATH) ## fetch libchdb into .cache

$(CHDB_LIB_PATH):
	scripts/fetch-chdb.sh $(CHDB_VERSION) $@

run: build chdb ## build and start the collector on the embedded store (./data)
	./$(BIN) run $(ARGS)

deps-test:
	scripts/apt-deps.sh $(TEST_DEBS)

test: deps-test chdb ## go vet + every test, with short fuzz runs
	scripts/generate.sh --check
	scripts/compose-check.sh
	console/build.sh --check
	$(GO) vet -tags browser ./...
	CONSOLE_SCREENSHOTS=$(CACHE)/screenshots $(GO) test -tags browser -count=1 -timeout 20m ./...
	$(MAKE) fuzz-short

# Every fuzz target, one at a time (go test -fuzz takes one target per run).
FUZZ_TARGETS = $(shell grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u | while read d; do grep -ho '^func Fuzz[A-Za-z0-9_]*' $$d/*_test.go | sed "s|func ||;s|^|$$d:|"; done)

# FUZZMINIMIZE=0 in the short runs: Go's fuzzer stops counting while it
# minimizes a new interesting input, and one still minimizing when -fuzztime
# ends is reported as "fuzzing process hung or terminated unexpectedly"
# (golang/go#52569, #56238), a failure of the fuzzer, not of our code. A
# crasher found without minimization is still written to testdata/fuzz.
FUZZMINIMIZE ?= 0
fuzz-short:
	@log=$$(mktemp); for t in $(FUZZ_TARGETS); do d=$${t%%:*}; f=$${t##*:}; \
	  echo "fuzz $$d $$f ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$d >$$log 2>&1 || { cat $$log; rm -f $$log; exit 1; }; \
	done; rm -f $$log

fuzz: ## run every fuzz target longer (FUZZTIME=60s), minimizing what it finds (a duration: see golang/go#75804)
	$(MAKE) fuzz-short FUZZTIME=$(or $(filter-out 50000x,$(FUZZTIME)),60s) FUZZMINIMIZE=60s

bench: chdb ## decode, store, landing and sensor benchmarks (-benchmem); the sensor against ndpiReader
	scripts/apt-deps.sh $(BENCH_DEBS)
	$(GO) test -run '^$$' -bench . -benchmem ./decoder/ ./schema/ ./sink/...
	$(GO) test -run '^$$' -bench . -benchtime 3x ./lander/
	$(GO) test -run '^$$' -bench . -benchmem ./sensor/packet/ ./sensor/flowtable/ ./sensor/dpi/ ./sensor/export/
	$(GO) test -run '^$$' -bench 'Pipeline|NDPIReader' -benchtime 3x -count 3 -cpu 1 ./sensor/

bench-e2e: build chdb ## loss-free rate of flowlens vs goflow2 and nfcapd on loopback
	scripts/apt-deps.sh $(BENCH_DEBS)
	bench/e2e.sh

lint: ## gofmt, go vet, staticcheck when installed
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@command -v staticcheck >/dev/null && staticcheck ./... || echo "staticcheck not installed, skipped"

compose-check: ## validate docker-compose.yml and the lab stack's files (Debian docker-compose)
	scripts/compose-check.sh

lab-test: ## start the docker-compose lab stack and run the ClickHouse server tests against it (needs docker)
	scripts/lab-test.sh

generate: ## regenerate schema/flowpb from schema/flow.proto (protoc, protoc-gen-go)
	scripts/generate.sh

console: ## rebuild the web console's assets (console/dist, committed) from console/web (needs npm)
	console/build.sh

console-speed: chdb ## the console's query times on 100M generated flows (about 10 min to generate, 4 GB in /tmp/console-speed)
	CONSOLE_SPEED_ROWS=100000000 CONSOLE_SPEED_DIR=/tmp/console-speed $(GO) test -run TestSpeed -v -timeout 3h ./console/

docs: dpi-accuracy ## regenerate docs/schema.md and docs/queries.md from the schema, and docs/dpi-accuracy.md
	$(GO) test ./schema -run TestSchemaDocUpToDate -update

dpi-accuracy: ## classify the nDPI corpus captures, compare with nDPI, write docs/dpi-accuracy.md
	$(GO) test ./sensor/dpi -run TestAccuracy -count=1 -update

clean:
	rm -rf bin
