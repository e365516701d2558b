#!/usr/bin/env bash
# make demo: start the flaky app (healthy, then 503s, then healthy again) and run the operator's
# local `check` mode against it, so detection and the planned remediation show within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${DEMO_PORT:-18080}"
target/debug/examples/flaky-app --listen "127.0.0.1:${port}" --script healthy:5s,503:8s,healthy &
app=$!
trap 'kill "$app" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:${port}/mode" >/dev/null 2>&1 && break
  sleep 0.1
done
target/debug/apphealth-operator check --policy examples/policies/demo.yaml \
  --url "http://127.0.0.1:${port}/healthz" --period 1s --probes 18
