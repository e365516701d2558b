#!/usr/bin/env bash
# make demo-cluster: the real operator binary and the real kubectl against the in-process Kubernetes
# API test server. Two "pods" of Deployment shop/web are served by the flaky demo app on 127.0.9.1
# and 127.0.9.2; one of them starts answering 503, the operator restarts the Deployment, the pod
# recovers. Everything runs on loopback and is stopped on exit.
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
k apply --server-side --validate=false -f crds/
k apply --server-side --validate=false -f - <<YAML
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
sed 's/periodSeconds: 10/periodSeconds: 2/; s/timeoutSeconds: 2/timeoutSeconds: 1/' examples/policies/web.yaml |
  k apply --server-side --validate=false -f -

echo "== the operator starts"
target/debug/apphealth-operator run >"$work/operator.log" 2>&1 &
pids+=($!)
healthy() { [ "$(k -n shop get ahp web -o jsonpath='{.status.conditions[?(@.type=="Healthy")].status}')" = "$1" ]; }
wait_for "Healthy=True" healthy True
k -n shop get ahp

echo "== web-2 starts answering 503"
curl -fsS -X PUT "http://127.0.9.2:$app_port/mode/503"
wait_for "Healthy=False" healthy False
wait_for "the restart" sh -c "kubectl -n shop get deploy web -o jsonpath='{.spec.template.metadata.annotations}' | grep -q restartedAt"
k -n shop get ahp
echo "pod template annotation: $(k -n shop get deploy web -o jsonpath='{.spec.template.metadata.annotations}')"

echo "== web-2 recovers"
curl -fsS -X PUT "http://127.0.9.2:$app_port/mode/healthy"
wait_for "Healthy=True" healthy True
k -n shop get ahp
echo
k -n shop describe ahp web | sed -n '/^Status:/,$p'
