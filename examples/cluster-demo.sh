#!/usr/bin/env bash
# make demo-cluster: the real operator binary and the real kubectl against the in-process Kubernetes
# API test server. Two "pods" of Deployment shop/web are served by the flaky demo app on 127.0.9.1
# and 127.0.9.2; both start answering 503 (a bad deploy), and the operator climbs a four-step ladder
# (diagnostics, a restart a PodDisruptionBudget holds back, a rolling restart, a scale-out) until the
# pods recover; the scale-out is then put back. Everything runs on loopback and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
api_port="${DEMO_API_PORT:-16443}"
app_port="${DEMO_APP_PORT:-18081}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export KUBECONFIG="$work/kubeconfig"
k() { kubectl --request-timeout=5s "$@"; }
wait_for() { # wait_for DESCRIPTION COMMAND... (bounded: 60 tries, 0.5s apart)
  local what="$1"; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "gave up waiting for $what" >&2; exit 1
}

target/debug/apphealth-testserver --port "$api_port" --kubeconfig "$KUBECONFIG" >"$work/apiserver.log" 2>&1 &
pids+=($!)
wait_for "the API test server" k get --raw /version
for ip in 127.0.9.1 127.0.9.2; do
  target/debug/examples/flaky-app --listen "$ip:$app_port" >>"$work/apps.log" 2>&1 &
  pids+=($!)
done

echo "== kubectl apply: the CRD, Deployment shop/web and its two pods, the policy"
k apply --server-side -f crds/
k apply --server-side -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: flaky-app, ports: [{name: http, containerPort: $app_port}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: flaky-app, ports: [{name: http, containerPort: $app_port}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: flaky-app, ports: [{name: http, containerPort: $app_port}]}]}
YAML
i=1
for ip in 127.0.9.1 127.0.9.2; do
  k -n shop patch pod "web-$i" --subresource status --type merge \
    -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}"
  i=$((i + 1))
done
k apply --server-side -f - <<YAML
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}
YAML
k apply --server-side -f examples/policies/ladder-demo.yaml

echo "== the operator starts"
metrics_addr="127.0.0.1:${DEMO_METRICS_PORT:-18090}"
# The "pods" are the flaky app on 127.0.9.x: loopback, which the operator probes only when told to.
target/debug/apphealth-operator run --http-addr "$metrics_addr" --allow-loopback >"$work/operator.log" 2>&1 &
pids+=($!)
healthy() { [ "$(k -n shop get ahp web -o jsonpath='{.status.conditions[?(@.type=="Healthy")].status}')" = "$1" ]; }
ran() { k -n shop get ahp web -o jsonpath='{.status.history[*].action}' | grep -q "$1"; }
wait_for "Healthy=True" healthy True
k -n shop get ahp

echo "== a bad deploy: both pods start answering 503"
for ip in 127.0.9.1 127.0.9.2; do curl -fsS -X PUT "http://$ip:$app_port/mode/503"; done
wait_for "Healthy=False" healthy False
echo "-- the ladder climbs: CollectDiagnostics, RestartPods (held by the PodDisruptionBudget), RolloutRestart, ScaleOut"
wait_for "ScaleOut" ran ScaleOut
k -n shop get ahp
echo "history (newest first):"
k -n shop get ahp web -o jsonpath='{range .status.history[*]}  step {.step}  {.action}  {.result}: {.message}{"\n"}{end}'
echo "diagnostics ConfigMap: $(k -n shop get ahp web -o jsonpath='{.status.diagnostics[0].configMap}')"
echo "replicas: $(k -n shop get deploy web -o jsonpath='{.spec.replicas}')  restartedAt: $(k -n shop get deploy web -o jsonpath='{.spec.template.metadata.annotations.apphealth\.io/restartedAt}')"

echo "== the pods recover; ScaleOut is put back after restoreAfter (10s) of health"
for ip in 127.0.9.1 127.0.9.2; do curl -fsS -X PUT "http://$ip:$app_port/mode/healthy"; done
wait_for "Healthy=True" healthy True
replicas() { [ "$(k -n shop get deploy web -o jsonpath='{.spec.replicas}')" = "$1" ]; }
wait_for "replicas restored to 2" replicas 2
k -n shop get ahp
echo
k -n shop describe ahp web | sed -n '/^Events:/,$p'
echo
echo "== the operator's metrics (http://$metrics_addr/metrics), remediations and holds:"
curl -fsS "http://$metrics_addr/metrics" | grep -E '^apphealth_(remediations|holds|verdict_changes)_total' || true
