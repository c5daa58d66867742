# cosell — the one entry point for building, running and testing. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
STAGES := pc-ingest sf-ingest mapper pc-writer sf-writer auditor

.PHONY: help run build test test-short vet fmt clean fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## start the whole system in one process (embedded NATS, emulators, six stages, demo data, status page)
	$(GO) run ./services/cosell run

build: ## build the six stages and the cosell CLI into bin/
	@mkdir -p $(BIN)
	@for s in $(STAGES) cosell; do $(GO) build -o $(BIN)/$$s ./services/$$s || exit 1; done
	@echo "built: $$(ls $(BIN) | tr '\n' ' ')"

test: vet ## vet, then every test of every module (real embedded nats-server, emulators over HTTP)
	$(GO) test -count=1 ./contracts/... ./deploy/salesforce/... ./services/...

test-short: ## the tests without vet, cached
	$(GO) test ./contracts/... ./services/...

vet: ## gofmt check and go vet
	@unformatted=$$(gofmt -l contracts services deploy); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./contracts/... ./deploy/salesforce/... ./services/...

fuzz: ## run every fuzz target for FUZZTIME each (default 10s); new crashers land in testdata/fuzz
	FUZZTIME=$(or $(FUZZTIME),10s) ./scripts/fuzz.sh

fmt: ## format the code
	gofmt -w contracts services deploy

clean: ## remove build output
	rm -rf $(BIN)
