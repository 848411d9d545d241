GO      ?= go
BIN     := bin
ACTORS  := generator heartbeat worker logger
export CGO_ENABLED ?= 0

.PHONY: build run test vet clean fuzz chaos bench bench-peers image

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/supervisor --rate 1000 --beats 60

# The whole suite: unit tests and end-to-end tests with real processes.
test: build
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

# Random SIGKILLs of actors and of the supervisor, random panics: a verdict.
CHAOS_FLAGS ?= --values 100000 --seed 1
chaos: build
	$(BIN)/chaos $(CHAOS_FLAGS)

# Figures: throughput against a baseline measured in the same run, recovery
# after SIGKILL, peak RSS, growth with N. About three minutes.
BENCH_FLAGS ?=
bench: build
	$(BIN)/bench $(BENCH_FLAGS)

# robust against Watermill over JetStream, the same job side by side:
# values/s, CPU per value, and a SIGKILL-and-restart probe of each. Its own
# Go module (bench/peers): it downloads Watermill; make bench does not.
PEERS_FLAGS ?=
bench-peers: build
	cd bench/peers && $(GO) run . --bin-dir ../../$(BIN) $(PEERS_FLAGS)

# The container image without a registry: every cmd/* built static and
# stripped into bin/, then bin/ into scratch (Dockerfile.scratch).
IMAGE_GOFLAGS ?= -trimpath '-ldflags=-s -w'
image: export CGO_ENABLED := 0
image: export GOFLAGS := $(GOFLAGS) $(IMAGE_GOFLAGS)
image: build
	docker build -f Dockerfile.scratch -t robust:local .

vet:
	$(GO) vet ./...

# Every decoder of wire input (and of what the data dir and the state
# bucket hold), one fuzz target each (seed corpora in each
# package's testdata/fuzz). CI runs each briefly: make fuzz FUZZTIME=3s.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./pkg/protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzParseReplay$$' -fuzztime $(FUZZTIME) ./pkg/protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeOuts$$' -fuzztime $(FUZZTIME) ./internal/actor/
	$(GO) test -run '^$$' -fuzz '^FuzzWorker$$' -fuzztime $(FUZZTIME) ./internal/actors/
	$(GO) test -run '^$$' -fuzz '^FuzzDeadLetterOf$$' -fuzztime $(FUZZTIME) ./internal/ledger/
	$(GO) test -run '^$$' -fuzz '^FuzzAudit$$' -fuzztime $(FUZZTIME) ./internal/tamper/
	$(GO) test -run '^$$' -fuzz '^FuzzLogger$$' -fuzztime $(FUZZTIME) ./internal/actors/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCrashReport$$' -fuzztime $(FUZZTIME) ./pkg/protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./internal/actor/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCreds$$' -fuzztime $(FUZZTIME) ./internal/natsx/
	$(GO) test -run '^$$' -fuzz '^FuzzSecrets$$' -fuzztime $(FUZZTIME) ./internal/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSup$$' -fuzztime $(FUZZTIME) ./internal/supervisor/

clean:
	rm -rf $(BIN) data
