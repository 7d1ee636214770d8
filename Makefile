# Messenger: build, run and test.
GO ?= go
ADDR ?= 127.0.0.1:8080
DATA ?= ./data

.PHONY: all build run test vet fmt bench fuzz tidy

all: build

build:
	$(GO) build -o bin/ ./cmd/...

## run: start the server on the embedded defaults (no Redis, SQLite in $(DATA)),
## with the bot "bot" on the offline responder (BOT= for none; BOT_URL and
## BOT_MODEL for a real model).
BOT ?= bot
run:
	$(GO) run ./cmd/messenger -addr $(ADDR) -data $(DATA) -bot "$(BOT)" $(if $(BOT_URL),-bot-url $(BOT_URL) -bot-model $(BOT_MODEL))

## test: vet, then every test with the race detector. Tests that need a
## Redis or PostgreSQL that is not there skip themselves; servicecheck says
## which before they run.
test: vet
	@$(GO) run ./internal/servicecheck
	$(GO) test -race -count=1 ./...

vet:
	@test -z "$$(gofmt -l $$(find . -name '*.go' -not -path './node_modules/*'))" || (echo "gofmt needed:"; gofmt -l $$(find . -name '*.go'); exit 1)
	$(GO) vet ./...

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './node_modules/*')

## bench: the benchmarks quoted in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## fuzz: a short run of every fuzz target (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done
