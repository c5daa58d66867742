# cosell — the one entry point for building, running and testing. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
STAGES := pc-ingest sf-ingest mapper pc-writer sf-writer auditor

.PHONY: help run build test test-short vet fmt clean jsforce fuzz chaos bench bench-full image images proto

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

run: ## start the whole system in one process (embedded NATS, emulators, six stages, demo data, status page)
	$(GO) run ./services/cosell run

build: ## build the six stages (with the embedded nats-server COSELL_NATS_EMBEDDED runs; the images leave it out) and the cosell CLI into bin/
	@mkdir -p $(BIN)
	@for s in $(STAGES) cosell; do $(GO) build -tags embeddednats -o $(BIN)/$$s ./services/$$s || exit 1; done
	@echo "built: $$(ls $(BIN) | tr '\n' ' ')"

test: vet ## vet, then every test of every module (real embedded nats-server, emulators over HTTP)
	$(GO) test -count=1 ./contracts/... ./deploy/k8s/... ./deploy/salesforce/... ./deploy/natsperm/... ./deploy/kubetest/... ./deploy/image/... ./services/...

test-short: ## the tests without vet, cached, without the chaos run
	$(GO) test -short ./contracts/... ./services/...

vet: ## gofmt check and go vet
	@unformatted=$$(gofmt -l contracts services deploy); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./contracts/... ./deploy/k8s/... ./deploy/salesforce/... ./deploy/natsperm/... ./deploy/kubetest/... ./deploy/image/... ./services/...

SERVICE   ?= mapper
TAG       ?= dev
PLATFORMS ?= linux/$(shell $(GO) env GOARCH)
image: ## one service's OCI image, no container daemon needed: SERVICE=mapper [TAG=0.1.0 PLATFORMS=linux/amd64,linux/arm64 PUSH=registry.example.com/cosell]
	$(GO) run ./deploy/image -service $(SERVICE) -version $(TAG) -platforms $(PLATFORMS) -oci $(BIN)/images/$(SERVICE) $(if $(PUSH),-push $(PUSH)/$(SERVICE):$(TAG))

images: ## all seven images (six stages and the cosell CLI) as `make image` builds one, into bin/images/ (and PUSH=... pushes)
	@for s in $(STAGES) cosell; do $(MAKE) --no-print-directory image SERVICE=$$s || exit 1; done

fuzz: ## run every fuzz target for FUZZTIME each (default 10s); new crashers land in testdata/fuzz
	FUZZTIME=$(or $(FUZZTIME),10s) ./scripts/fuzz.sh

chaos: ## fault-injection suite: every stage a process, kill -9s, a NATS restart, upstream faults; prints a verdict (SF_CDC=off: sf-ingest polls instead of following Change Data Capture)
	$(GO) run ./services/chaos -duration $(or $(DURATION),60s) -kills $(or $(KILLS),8) -sf-cdc $(or $(SF_CDC),on)

bench: ## end-to-end benchmarks with every stage a process; prints the Markdown tables kept in docs/benchmarks.md, ending with issue 16's targets met / not met
	$(GO) run ./services/bench -n $(or $(N),500) -rate $(or $(RATE),100) -rate-high $(or $(RATE_HIGH),500) -duration $(or $(DURATION),20s)

bench-full: ## make bench plus a 10,000-referral backlog and a 10-minute steady run with memory and nats-server's heap sampled every 10 s (~30 min)
	$(GO) run ./services/bench -n $(or $(N),500) -rate $(or $(RATE),100) -rate-high $(or $(RATE_HIGH),500) -duration $(or $(DURATION),20s) -big $(or $(BIG),10000) -soak $(or $(SOAK),10m)

PUBSUB_PB := services/internal/clients/sfpubsub/pubsubpb
PUBSUB_GO := github.com/cosell-dev/cosell/$(PUBSUB_PB);pubsubpb
proto: ## regenerate the Salesforce Pub/Sub API Go code from its .proto (needs protoc: apt-get install protobuf-compiler)
	@command -v protoc >/dev/null || { echo "proto: protoc is not installed (Debian: apt-get install -y protobuf-compiler)"; exit 1; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	cd $(PUBSUB_PB) && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I . \
	  --go_out=. --go_opt=paths=source_relative --go_opt='Mpubsub_api.proto=$(PUBSUB_GO)' \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt='Mpubsub_api.proto=$(PUBSUB_GO)' \
	  pubsub_api.proto

fmt: ## format the code
	gofmt -w contracts services deploy

jsforce: ## run the independent jsforce client (scripts/jsforce) against a fresh Salesforce emulator
	@command -v node >/dev/null || { echo "jsforce: node is not installed"; exit 1; }
	@cd scripts/jsforce && { [ -d node_modules/jsforce ] || npm ci --no-audit --no-fund; }
	@mkdir -p $(BIN) && $(GO) build -o $(BIN)/cosell ./services/cosell
	@port=$${JSFORCE_PORT:-18082}; $(BIN)/cosell emulator sf --listen 127.0.0.1:$$port >/dev/null & pid=$$!; \
	  trap "kill $$pid" EXIT; \
	  for i in $$(seq 1 50); do curl -fs -o /dev/null http://127.0.0.1:$$port/services/data/ && break; sleep 0.1; done; \
	  SF_URL=http://127.0.0.1:$$port node scripts/jsforce/check.js

clean: ## remove build output
	rm -rf $(BIN)

.PHONY: screenshot
screenshot: ## run demo traffic (a parked message, a held deal) and save headless Chromium's shots of the status page (overview, a timeline, dead letters) to docs/
	$(GO) run ./services/auditor/screenshot -o docs
