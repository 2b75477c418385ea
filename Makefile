# Leadflow's developer entry points. `make run` and `make test` are all a
# fresh machine needs: every tool is built from versions pinned in tools/go.mod.

SHELL       := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN      := $(CURDIR)/bin
SERVICES := identity ingestion scoring lifecycle handoff gateway
# Every module of the workspace, for tests and vet.
MODULES  := ./gen/... ./pkg/... ./cmd/leadflow/... $(foreach s,$(SERVICES),./services/$(s)/...) ./deploy/...
TOOLS    := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc \
            $(BIN)/protoc-gen-grpc-gateway $(BIN)/protoc-gen-openapiv2 $(BIN)/protoprint
GO_TEST_FLAGS ?= -race -count=1 -timeout=20m

export GOFLAGS := -buildvcs=false

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# --- tools -----------------------------------------------------------------

$(TOOLS) &: tools/go.mod tools/go.sum tools/protoprint/main.go
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ \
		github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 \
		./protoprint
	@touch $(TOOLS)

.PHONY: tools
tools: $(TOOLS) ## Build the pinned code-generation tools into bin/.

# --- code generation ---------------------------------------------------------

.PHONY: generate
generate: $(TOOLS) ## Regenerate third_party/ protos and everything in gen/.
	rm -rf third_party gen/go gen/openapi/*.json
	$(BIN)/protoprint -out third_party
	$(BIN)/buf lint
	$(BIN)/buf generate

.PHONY: check-generated
check-generated: generate ## Fail when gen/ or third_party/ differ from what the protos produce.
	@if [ -n "$$(git status --porcelain -- gen third_party)" ]; then \
		git status --porcelain -- gen third_party; \
		echo "generated code is stale: run 'make generate' and commit the result"; exit 1; \
	fi

.PHONY: breaking
breaking: $(TOOLS) ## Check the protos for wire/JSON-breaking changes against main.
	$(BIN)/buf breaking --against '.git#branch=main'

# --- build, lint, test -------------------------------------------------------

.PHONY: build
build: ## Build every service and the leadflow CLI into bin/.
	@mkdir -p $(BIN)
	go build -o $(BIN)/ $(foreach s,$(SERVICES),./services/$(s)/cmd/$(s)) ./cmd/leadflow

.PHONY: vet
vet: ## Run go vet over every module.
	go vet $(MODULES)

.PHONY: browser-deps
browser-deps: ## Install Debian's Chromium for the browser test when it can; say whether that test runs.
	@if command -v chromium >/dev/null 2>&1; then \
		echo "browser test: runs with $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser test: installing Debian's chromium..."; \
		if timeout 900 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium' >/dev/null 2>&1; then \
			echo "browser test: runs with $$(command -v chromium)"; \
		else echo "browser test: SKIPPED (chromium could not be installed)"; fi; \
	else \
		echo "browser test: SKIPPED (no chromium; install it, e.g. apt-get install chromium)"; \
	fi

.PHONY: test
test: check-generated vet browser-deps ## Run every module's tests with -race against a throwaway PostgreSQL.
	go test $(GO_TEST_FLAGS) $(MODULES)

# Each benchmark at its default size; BENCHMARKS.md says what they measure
# and how to run them bigger. They compare with baselines measured in the
# same run, since this kind of machine is shared and noisy.
.PHONY: bench
bench: ## Run every benchmark once at its default size (about 10 minutes).
	go test -run '^$$' -bench 'ImportLeads|ReimportLeads' -benchtime 5x ./services/ingestion/internal/server/
	go test -run '^$$' -bench ApplyActivity -cpu 1 ./services/scoring/internal/scoring/
	go test -run '^$$' -bench Rescore -benchtime 2x ./services/scoring/internal/store/
	go test -run '^$$' -bench DeliverEvents -benchtime 1x ./services/scoring/internal/server/
	go test -run '^$$' -bench DeliverEvents -benchtime 200x ./services/lifecycle/internal/sink/
	go test -run '^$$' -bench FunnelReport -benchtime 3x ./services/lifecycle/internal/store/
	go test -run '^$$' -bench ImportThroughThePipeline -benchtime 1x ./cmd/leadflow/internal/e2e/

# --- run ---------------------------------------------------------------------

.PHONY: run
run: build ## Start PostgreSQL (unless DATABASE_URL is set), migrate, seed and run the whole suite.
	$(BIN)/leadflow dev

.PHONY: clean
clean: ## Remove built binaries (keeps .data/).
	rm -rf $(BIN)
