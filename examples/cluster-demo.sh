#!/usr/bin/env bash
# make demo-cluster: the operator on a real Kubernetes control plane, built from Kubernetes' own
# code and run on this machine (make cluster's, in target/kube-demo): the chart installed by helm,
# the operator binary running as the chart's ServiceAccount, Deployment shop/web with two pods
# that kwok runs at loopback IPs, served by the flaky demo app. A dependency of the app goes down:
# every pod answers 503, restarts do not help, and the operator climbs a four-step ladder
# (diagnostics, a restart a PodDisruptionBudget holds back, a rolling restart done by the
# Deployment controller, a scale-out through the scale subresource); the dependency comes back, the
# pods recover and the scale-out is put back. Everything started is stopped on exit.
#   DEMO_HOLD=1 make demo-cluster   keeps it all running at the end until Enter
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/target/tools/bin:$PATH"
. examples/lib/local-cluster.sh
work="target/demo-cluster"
rm -rf "$work" && mkdir -p "$work"
trap stop_local EXIT
control="127.0.0.1:${DEMO_CONTROL_PORT:-18099}"
metrics="127.0.0.1:${DEMO_METRICS_PORT:-18090}"
k() { kubectl --request-timeout=10s "$@"; }

echo "== the local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
start_local target/kube-demo
echo "   (watch along in another terminal: export KUBECONFIG=$KUBECONFIG; kubectl get ahp -n shop -w)"
k get nodes

echo "== helm install: the CRD, RBAC for namespace shop, the operator's Deployment"
install_chart apphealth apphealth-system shop
helm list -n apphealth-system

echo "== the operator, as the chart's ServiceAccount (a token from the TokenRequest API)"
start_operator apphealth apphealth-system "$metrics" "$work/operator.log"

echo "== Deployment shop/web (2 pods), its PodDisruptionBudget, the policy"
k create namespace shop >/dev/null 2>&1 || true
serve_pods shop "$control" "$work/flaky-app.log"
k apply --server-side -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: web, image: flaky-app, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}
YAML
k -n shop rollout status deploy/web --timeout=60s
k apply --server-side -f examples/policies/ladder-demo.yaml
kubectl -n shop get ahp -w --output-watch-events >"$work/watch.log" 2>&1 &
local_pids+=($!)
healthy() { [ "$(k -n shop get ahp web -o jsonpath='{.status.conditions[?(@.type=="Healthy")].status}')" = "$1" ]; }
ran() { k -n shop get ahp web -o jsonpath='{.status.history[*].action}' | grep -q "$1"; }
wait_for "Healthy=True" healthy True
k -n shop get pods -o wide
k -n shop get ahp

echo "== a dependency goes down: every pod of web answers 503, before and after any restart"
curl -fsS -X PUT "http://$control/mode/503"
wait_for "Healthy=False" healthy False
echo "-- the ladder climbs: CollectDiagnostics, RestartPods (held by the PodDisruptionBudget), RolloutRestart, ScaleOut"
wait_for "ScaleOut" ran ScaleOut
k -n shop get ahp
echo "history (newest first):"
k -n shop get ahp web -o jsonpath='{range .status.history[*]}  step {.step}  {.action}  {.result}: {.message}{"\n"}{end}'
echo "diagnostics ConfigMap: $(k -n shop get ahp web -o jsonpath='{.status.diagnostics[0].configMap}')"
echo "ReplicaSets (the rolling restart's new one, scaled out):"
k -n shop get rs

echo "== the dependency is back: the pods recover; ScaleOut is put back after 10s of health"
curl -fsS -X PUT "http://$control/mode/healthy"
wait_for "Healthy=True" healthy True
replicas() { [ "$(k -n shop get deploy web -o jsonpath='{.spec.replicas}')" = "$1" ]; }
wait_for "replicas restored to 2" replicas 2
k -n shop get ahp
echo
k -n shop describe ahp web | sed -n '/^Events:/,$p'
echo
echo "== what kubectl get ahp -w saw:"
cat "$work/watch.log"
echo
echo "== the operator's metrics (http://$metrics/metrics), remediations and holds:"
curl -fsS "http://$metrics/metrics" | grep -E '^apphealth_(remediations|holds|verdict_changes)_total' || true
if [ "${DEMO_HOLD:-}" = 1 ]; then
  read -r -p "Everything still runs (KUBECONFIG=$KUBECONFIG). Enter stops it. "
fi
