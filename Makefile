# Every entry point of the project. `make run` brings up a local control plane with the operator; `make test` runs
# every check and test against a fresh one.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT  := $(CURDIR)
LOCAL := $(ROOT)/.local
BIN   := $(LOCAL)/bin
# Go's build cache lives in the work tree (ignored by git) so that a second build of the control plane takes seconds.
export GOCACHE ?= $(ROOT)/.cache/go-build
export GOFLAGS ?= -buildvcs=false
export CARGO_TERM_COLOR ?= never

# Upstream Kubernetes components, kubectl and kwok, pinned in e2e/cluster/go.mod.
CLUSTER_PKGS := k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok ./cmd/localcluster

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: cluster-build
cluster-build: ## build the local control plane, kubectl and helm into .local/bin
	@mkdir -p $(BIN)
	cd e2e/cluster && go build -o $(BIN)/ $(CLUSTER_PKGS)
	cd e2e/cluster/helm && go build -o $(BIN)/ helm.sh/helm/v4/cmd/helm

# Jaeger (v1's all-in-one: OTLP receiver, query API, in-memory storage), a trace store for the tracing e2e test and
# bench and to look at the trees' traces locally, pinned in e2e/cluster/jaeger/go.mod (a module of its own: its
# dependency tree is large). A file target: built once, and again only when the pin changes. The build holds a lock,
# so that a second `make jaeger` (e.g. `make e2e` while .ci/run's early background build is still going) waits for
# the first and then finds the binary up to date instead of compiling it a second time.
JAEGER := $(BIN)/jaeger
.PHONY: jaeger
jaeger: $(JAEGER) ## build Jaeger (a local trace store: see docs/operations.md, Tracing) into .local/bin
$(JAEGER): e2e/cluster/jaeger/go.mod e2e/cluster/jaeger/go.sum
	@mkdir -p $(BIN)
	flock $(BIN)/.jaeger.lock sh -c '[ $@ -nt e2e/cluster/jaeger/go.mod ] && [ $@ -nt e2e/cluster/jaeger/go.sum ] || \
		{ cd e2e/cluster/jaeger && go build -o $@.tmp github.com/jaegertracing/jaeger/cmd/all-in-one && mv $@.tmp $@; }'

.PHONY: cluster-up
cluster-up: cluster-build ## start the local control plane (idempotent); kubeconfig in .local/kubeconfig
	$(BIN)/localcluster up --root $(LOCAL)

.PHONY: cluster-down
cluster-down: stop ## stop every process of the local control plane and remove its data (idempotent)
	@if [ -x $(BIN)/localcluster ]; then $(BIN)/localcluster down --root $(LOCAL); fi

.PHONY: stop
stop: ## stop the operator, gateway, process node and model stand-in started by `make run`
	@for f in $(LOCAL)/run/*.pid; do [ -f "$$f" ] || continue; kill "$$(cat $$f)" 2>/dev/null || true; rm -f "$$f"; done

.PHONY: crds
crds: ## regenerate crds/manifests/, docs/api.md and docs/mcp-tools.md from the API types and the gateway's tools
	cargo run -q -p crds --bin crdgen -- crds/manifests docs/api.md
	cargo run -q -p mcp-gateway -- --write-tool-reference docs/mcp-tools.md

.PHONY: lint
lint: ## formatting and lints (Rust and Go)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@unformatted=$$(gofmt -l e2e/cluster); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	cd e2e/cluster && go vet ./...

.PHONY: unit
unit: ## unit tests (no cluster), including the CRD drift check
	cargo test --workspace --exclude e2e

.PHONY: cluster-selftest
cluster-selftest: cluster-build ## the control plane's own test: idempotent up, down leaves no process
	cd e2e/cluster && go test -count=1 ./...

# The e2e MCP client is the official MCP Python SDK, from PyPI, in a virtualenv under .local.
PYTHON_ENV := $(LOCAL)/venv
.PHONY: python-env
python-env: ## the Python environment of the e2e MCP client
	@if [ ! -x $(PYTHON_ENV)/bin/python ]; then python3 -m venv $(PYTHON_ENV); fi
	@$(PYTHON_ENV)/bin/pip install -q --disable-pip-version-check -r e2e/python/requirements.txt

# The official TypeScript MCP SDK, pinned by e2e/typescript/package-lock.json, for the e2e people's-client test.
TYPESCRIPT_ENV := $(LOCAL)/typescript

.PHONY: typescript-env
typescript-env: ## the TypeScript MCP SDK (pinned) of the e2e tests into .local/typescript
	@mkdir -p $(TYPESCRIPT_ENV)
	@if ! cmp -s e2e/typescript/package-lock.json $(TYPESCRIPT_ENV)/package-lock.json; then \
		cp e2e/typescript/package.json e2e/typescript/package-lock.json $(TYPESCRIPT_ENV)/ && \
		{ cd $(TYPESCRIPT_ENV) && npm ci --no-audit --no-fund --loglevel=error; } || \
		{ rm -f $(TYPESCRIPT_ENV)/package-lock.json; exit 1; }; \
	fi

# Playwright (playwright-core, pinned by e2e/browser/package-lock.json) for the dashboard's browser tests. It drives
# Debian's chromium (/usr/bin/chromium, installed by .ci/run) and never downloads a browser of its own.
BROWSER_ENV := $(LOCAL)/browser

.PHONY: browser-env
browser-env: ## Playwright (pinned) of the dashboard's browser tests into .local/browser; needs /usr/bin/chromium
	@command -v chromium >/dev/null || { echo "no chromium: apt-get install -y --no-install-recommends chromium"; exit 1; }
	@mkdir -p $(BROWSER_ENV)
	@if ! cmp -s e2e/browser/package-lock.json $(BROWSER_ENV)/package-lock.json; then \
		cp e2e/browser/package.json e2e/browser/package-lock.json $(BROWSER_ENV)/ && \
		{ cd $(BROWSER_ENV) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; } || \
		{ rm -f $(BROWSER_ENV)/package-lock.json; exit 1; }; \
	fi

# The real Claude Code CLI, pinned, from npm (its native binary comes as an optional dependency). Agent Pods on the
# process node run it against the scripted Anthropic stand-in in tests, or against the real API with a key. The
# runner's price table (stream-json/src/pricing.rs) copies this release's model catalog: update both together.
CLAUDE_VERSION := 2.1.328
CLAUDE         := $(LOCAL)/claude/node_modules/.bin/claude
.PHONY: claude
claude: ## the Claude Code CLI (pinned) into .local/claude
	@if ! { [ -x $(CLAUDE) ] && $(CLAUDE) --version 2>/dev/null | grep -q '^$(CLAUDE_VERSION) '; }; then \
		mkdir -p $(LOCAL)/claude && cd $(LOCAL)/claude && \
		npm install --no-audit --no-fund --no-save --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_VERSION); \
	fi
	@$(CLAUDE) --version

.PHONY: e2e
e2e: python-env typescript-env browser-env claude jaeger ## end-to-end tests against the running local cluster (see cluster-up); E2E_ONLY="a b" for some
	cargo build -q --bins
	scripts/e2e-lanes.sh

# Container images, built without a container engine: static binaries (glibc, crt-static) FROM scratch, as the
# non-root user 65532, written as OCI archives by images/build (go-containerregistry). images/*/Dockerfile builds the
# same images with Docker.
IMAGE_REPO    ?= ghcr.io/agentorchestrator
CA_BUNDLE     ?= /etc/ssl/certs/ca-certificates.crt
VERSION       := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_DIR    := $(ROOT)/target-static
IMAGES        := agent-operator mcp-gateway
CHART         := charts/agent-orchestrator

.PHONY: images
images: ## container images of agent-operator and mcp-gateway as OCI archives in .local/images/
	RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TARGET_DIR=$(STATIC_DIR) \
		cargo build --release --locked --target $(STATIC_TARGET) $(addprefix -p ,$(IMAGES))
	@mkdir -p $(BIN)
	cd images/build && go build -o $(BIN)/imagebuild .
	@for n in $(IMAGES); do \
		$(BIN)/imagebuild --name $$n --binary $(STATIC_DIR)/$(STATIC_TARGET)/release/$$n --rootfs images/rootfs \
			--file $(CA_BUNDLE)=etc/ssl/certs/ca-certificates.crt --ref $(IMAGE_REPO)/$$n:$(VERSION) \
			--version $(VERSION) --source $$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml) \
			--out $(LOCAL)/images/$$n.tar; \
	done

.PHONY: images-check
images-check: images ## check the image archives: config (user, entrypoint, platform), static binary, --version inside
	@unformatted=$$(gofmt -l images/build); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	cd images/build && go vet ./... && IMAGES_DIR=$(LOCAL)/images go test -count=1 -v ./...

.PHONY: chart-sync
chart-sync: ## copy crds/manifests/ into the Helm chart (after `make crds`)
	cp crds/manifests/*.yaml $(CHART)/files/crds/

.PHONY: chart-check
chart-check: cluster-build ## the Helm chart: CRD copies in sync with crds/manifests/, helm lint --strict
	@diff -r crds/manifests $(CHART)/files/crds >/dev/null || { diff -r crds/manifests $(CHART)/files/crds | head -20; \
		echo "$(CHART)/files/crds/ differs from crds/manifests/: run make chart-sync"; exit 1; }
	$(BIN)/helm lint --strict $(CHART)
	$(BIN)/helm lint --strict $(CHART) -f $(CHART)/ci/all-features-values.yaml

.PHONY: test
test: lint unit cluster-selftest images-check chart-check ## every check and test, against a fresh local cluster that is torn down afterwards
	$(MAKE) --no-print-directory cluster-down
	$(MAKE) --no-print-directory cluster-up
	status=0; $(MAKE) --no-print-directory e2e || status=$$?; \
	$(MAKE) --no-print-directory cluster-down; exit $$status

.PHONY: bench
bench: cluster-build python-env browser-env jaeger ## benchmarks (lifecycle, callbacks, gateway, hand-over, dashboard, scale: 10,000 sessions and an API server restart, tracing on vs off) on a fresh local cluster; prints figures and targets
	cargo build --release -p agent-operator -p mcp-gateway
	cargo build -p e2e --bin bench
	$(MAKE) --no-print-directory cluster-down
	$(MAKE) --no-print-directory cluster-up
	status=0; AGENT_OPERATOR_BIN=$(ROOT)/target/release/agent-operator MCP_GATEWAY_BIN=$(ROOT)/target/release/mcp-gateway \
		target/debug/bench || status=$$?; \
	$(MAKE) --no-print-directory cluster-down; exit $$status

.PHONY: run
run: cluster-up claude ## local control plane, CRDs, operator, gateway, process node and model stand-in; shows what to do
	cargo build --bins
	scripts/run-local.sh
