#!/usr/bin/env bash
# make e2e: the whole scenario end to end, on the local control plane by default (started here in
# target/kube-e2e, stopped on exit), or on a cluster you name with E2E_CONTEXT (kind, k3d,
# minikube, a real cluster: the operator and flaky-app images are built and loaded there).
# Asserts: the chart installs; the app is probed and Healthy; one pod answers 503 → Unhealthy →
# RolloutRestart by the Deployment controller → recovered; a second failure inside the cooldown is
# held back. Everything it creates is removed on exit.
#   make e2e                              the local control plane
#   make e2e E2E_CONTEXT=kind-dev         a cluster of yours (refuses other contexts than kind-*,
#                                         k3d-*, minikube unless E2E_ANY_CONTEXT=1)
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/target/tools/bin:$PATH"
. examples/lib/local-cluster.sh
ns="apphealth-e2e"
system="apphealth-e2e-system"
work="target/e2e"
rm -rf "$work" && mkdir -p "$work"
context="${E2E_CONTEXT:-}"

cleanup() {
  if [ -n "$context" ]; then
    helm uninstall apphealth -n "$system" >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" "$system" --wait=false >/dev/null 2>&1 || true
  fi
  stop_local
}
trap cleanup EXIT

if [ -z "$context" ]; then
  echo "== the local control plane"
  start_local target/kube-e2e
  control="127.0.0.1:${E2E_CONTROL_PORT:-18098}"
  echo "== the operator (chart, then the binary as the chart's ServiceAccount)"
  install_chart apphealth "$system" "$ns"
  start_operator apphealth "$system" "127.0.0.1:${E2E_METRICS_PORT:-18097}" "$work/operator.log"
  kubectl create namespace "$ns" >/dev/null
  serve_pods "$ns" "$control" "$work/flaky-app.log"
  image="flaky-app"
  # break_pod: the first pod of the app answers 503 (the flaky app serves it at its IP here).
  break_pod() {
    local ip
    ip="$(kubectl get pod -n "$ns" -l app=flaky -o jsonpath='{.items[0].status.podIP}')"
    curl -fsS -X PUT "http://$ip:8080/mode/503"
  }
else
  kubectl config use-context "$context" >/dev/null
  case "$context" in
    kind-*|k3d-*|minikube|docker-desktop|rancher-desktop) ;;
    *) if [ "${E2E_ANY_CONTEXT:-}" != 1 ]; then
         echo "e2e: the context '$context' does not look like a throw-away cluster (kind-*, k3d-*, minikube);" >&2
         echo "     set E2E_ANY_CONTEXT=1 to run against it anyway" >&2
         exit 2
       fi ;;
  esac
  container="${CONTAINER:-docker}"
  tag="e2e-$(date +%s)"
  operator="ghcr.io/apphealth/apphealth-operator:$tag"
  image="ghcr.io/apphealth/flaky-app:$tag"
  echo "== images"
  "$container" build -q -t "$operator" .
  "$container" build -q --target flaky-app -t "$image" .
  case "$context" in
    kind-*) kind load docker-image "$operator" "$image" --name "${context#kind-}" ;;
    k3d-*) k3d image import "$operator" "$image" -c "${context#k3d-}" ;;
    minikube) minikube image load "$operator" && minikube image load "$image" ;;
    *) echo "e2e: push $operator and $image where the cluster can pull them" ;;
  esac
  echo "== the operator (chart)"
  helm install apphealth charts/apphealth-operator -n "$system" --create-namespace --wait \
    --set image.repository="${operator%:*}" --set image.tag="$tag" --set image.pullPolicy=IfNotPresent \
    --set "watchNamespaces={$ns}"
  kubectl create namespace "$ns"
  # break_pod: the first pod of the app answers 503, switched through a port-forward.
  break_pod() {
    local pod pf
    pod="$(kubectl get pod -n "$ns" -l app=flaky -o jsonpath='{.items[0].metadata.name}')"
    kubectl port-forward -n "$ns" "pod/$pod" 18099:8080 >/dev/null 2>&1 &
    pf=$!
    wait_for "port-forward to $pod" curl -fsS http://127.0.0.1:18099/mode
    curl -fsS -X PUT http://127.0.0.1:18099/mode/503
    kill "$pf"
  }
fi

echo "== the flaky app and a policy"
kubectl apply -n "$ns" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: flaky}
spec:
  replicas: 2
  selector: {matchLabels: {app: flaky}}
  template:
    metadata: {labels: {app: flaky}}
    spec:
      containers:
        - name: app
          image: $image
          imagePullPolicy: IfNotPresent
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: apphealth.io/v1alpha1
kind: AppHealthPolicy
metadata: {name: flaky}
spec:
  targetRef: {kind: Deployment, name: flaky}
  probe: {http: {port: http, path: /healthz, timeoutSeconds: 1}, periodSeconds: 2}
  triggers: [{consecutiveFailures: {threshold: 2}}]
  recovery: {consecutiveSuccesses: 1}
  remediation:
    steps: [{action: RolloutRestart, timeout: 2m}]
    cooldown: 10m
YAML
kubectl rollout status -n "$ns" deploy/flaky --timeout=120s

condition() { kubectl get ahp flaky -n "$ns" -o jsonpath="{.status.conditions[?(@.type==\"$1\")].$2}"; }
is() { [ "$(condition "$1" "$2")" = "$3" ]; }
expect() { # expect DESCRIPTION COMMAND...: wait_for, and say so
  if wait_for "$@"; then echo "ok: $1"; else
    echo "e2e FAILED waiting for $1" >&2
    kubectl describe ahp flaky -n "$ns" >&2 || true
    exit 1
  fi
}

expect "probed and Healthy" is Healthy status True
break_pod
expect "Unhealthy" is Healthy status False
expect "a rolling restart" sh -c "kubectl get deploy flaky -n $ns -o jsonpath='{.spec.template.metadata.annotations}' | grep -q restartedAt"
kubectl rollout status -n "$ns" deploy/flaky --timeout=180s
expect "recovered" is Remediating reason Recovered
if [ -z "$context" ]; then
  # The new pods are served at their IPs once they run.
  expect "the new pods served" sh -c "curl -fsS http://$control/pods | grep -c flaky | grep -qx 2"
fi
break_pod
expect "the cooldown holding a second restart back" is RemediationBlocked reason Cooldown
kubectl get ahp -n "$ns"
echo "e2e passed"
