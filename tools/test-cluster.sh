#!/usr/bin/env bash
# make test-cluster: the end-to-end scenarios (tests/cluster) on a local control plane of their own,
# in target/kube-test, started before them and stopped after them whatever happens; the control
# plane's logs stay in target/kube-test/logs and each scenario's in target/cluster-tests.
#   tools/test-cluster.sh [cargo test arguments after --, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"
dir="${APPHEALTH_TEST_CLUSTER_DIR:-target/kube-test}"
bin="$(./tools/kube/build.sh)"
"$cargo" build --quiet -p apphealth-cluster -p apphealth-operator --bin apphealth-cluster --bin apphealth-operator
"$cargo" test --no-run --quiet --test cluster
cluster="$("$cargo" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/apphealth-cluster"
# A control plane left behind by an interrupted run is stopped first.
"$cluster" down --dir "$dir" >/dev/null
trap '"$cluster" down --dir "$dir" >/dev/null || true' EXIT
"$cluster" up --dir "$dir" --bin "$bin"
rm -rf target/cluster-tests
# The scenarios mostly wait on the cluster and the operator; a few at a time keep 2 cores busy.
APPHEALTH_CLUSTER_DIR="$PWD/$dir" RUST_BACKTRACE=0 \
  "$cargo" test --test cluster -- --ignored --test-threads="${CLUSTER_TEST_THREADS:-4}" "$@"
