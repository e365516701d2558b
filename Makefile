# apphealth-operator — every task is one make target. Two matter most:
#   make demo   build, then watch the operator judge a flaky app (no cluster needed)
#   make test   everything CI checks: format, lint, CRD drift, unit and integration tests
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
CHART := charts/apphealth-operator

.PHONY: all build demo demo-cluster test fmt fmt-check lint crd crd-check apiserver clean

all: build

build:
	$(CARGO) build --bin apphealth-operator --examples
	$(CARGO) build -p apphealth-testserver --bin apphealth-testserver

demo: build
	./examples/demo.sh

# The operator binary and kubectl against the in-process API test server (needs kubectl).
demo-cluster: build
	./examples/cluster-demo.sh

test: fmt-check lint crd-check
	$(CARGO) test --workspace --all-targets

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Regenerate the CRD from the Rust types (the one command for generated files), and its copy in
# the chart.
CRD_FILE := apphealthpolicies.apphealth.io.yaml
crd:
	$(CARGO) run --quiet --bin apphealth-operator -- crd > crds/$(CRD_FILE)
	cp crds/$(CRD_FILE) $(CHART)/crds/$(CRD_FILE)

# Fails when the checked-in CRD and the code disagree, or the chart's copy and crds/.
crd-check:
	$(CARGO) run --quiet --bin apphealth-operator -- crd | diff -u crds/$(CRD_FILE) - \
	  || { echo "crds/ is stale: run 'make crd' and commit the result"; exit 1; }
	diff -u crds/$(CRD_FILE) $(CHART)/crds/$(CRD_FILE) \
	  || { echo "$(CHART)/crds/ differs from crds/: run 'make crd' and commit the result"; exit 1; }

# The in-process Kubernetes API test server on a loopback port, for kubectl and the operator binary.
APISERVER_PORT ?= 6443
apiserver:
	$(CARGO) run --quiet -p apphealth-testserver -- --port $(APISERVER_PORT) --kubeconfig target/testserver.kubeconfig

clean:
	$(CARGO) clean
