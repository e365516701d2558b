#!/usr/bin/env bash
# make e2e: the whole scenario on a real cluster (kind or k3d), for anyone who has one.
# Builds the operator and flaky-app images, loads them into the cluster, installs the chart,
# deploys the flaky app and a policy, and asserts: probed and Healthy; one pod answers 503 →
# Unhealthy → RolloutRestart → recovered; a second failure inside the cooldown is held back.
# Refuses to run against a context that does not look like a throw-away cluster unless
# E2E_ANY_CONTEXT=1. Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/target/tools/bin:$PATH"
context="$(kubectl config current-context)"
case "$context" in
  kind-*|k3d-*|minikube|docker-desktop|rancher-desktop) ;;
  *) if [ "${E2E_ANY_CONTEXT:-}" != 1 ]; then
       echo "e2e: the current context '$context' does not look like a throw-away cluster (kind-*, k3d-*, minikube);" >&2
       echo "     set E2E_ANY_CONTEXT=1 to run against it anyway" >&2
       exit 2
     fi ;;
esac
container="${CONTAINER:-docker}"
tag="e2e-$(date +%s)"
operator="ghcr.io/apphealth/apphealth-operator:$tag"
app="ghcr.io/apphealth/flaky-app:$tag"
ns="apphealth-e2e"
system="apphealth-e2e-system"

cleanup() {
  helm uninstall apphealth -n "$system" >/dev/null 2>&1 || true
  kubectl delete namespace "$ns" "$system" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== images"
"$container" build -q -t "$operator" .
"$container" build -q --target flaky-app -t "$app" .
case "$context" in
  kind-*) kind load docker-image "$operator" "$app" --name "${context#kind-}" ;;
  k3d-*) k3d image import "$operator" "$app" -c "${context#k3d-}" ;;
  minikube) minikube image load "$operator" && minikube image load "$app" ;;
  *) echo "e2e: push $operator and $app where the cluster can pull them" ;;
esac

echo "== the operator (chart)"
helm install apphealth charts/apphealth-operator -n "$system" --create-namespace --wait \
  --set image.repository="${operator%:*}" --set image.tag="$tag" --set image.pullPolicy=IfNotPresent

echo "== the flaky app and a policy"
kubectl create namespace "$ns"
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
          image: $app
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
wait_for() { # wait_for DESCRIPTION COMMAND... (bounded: 120 tries, 1s apart)
  local what="$1"; shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && { echo "ok: $what"; return 0; }; sleep 1; done
  echo "e2e FAILED waiting for $what" >&2
  kubectl describe ahp flaky -n "$ns" >&2 || true
  exit 1
}
is() { [ "$(condition "$1" "$2")" = "$3" ]; }
break_pod() { # switches one pod to 503 through a port-forward
  local pod; pod="$(kubectl get pod -n "$ns" -l app=flaky -o jsonpath='{.items[0].metadata.name}')"
  kubectl port-forward -n "$ns" "pod/$pod" 18099:8080 >/dev/null 2>&1 &
  local pf=$!
  wait_for "port-forward to $pod" curl -fsS http://127.0.0.1:18099/mode
  curl -fsS -X PUT http://127.0.0.1:18099/mode/503
  kill "$pf"
}

wait_for "probed and Healthy" is Healthy status True
break_pod
wait_for "Unhealthy" is Healthy status False
wait_for "a rolling restart" sh -c "kubectl get deploy flaky -n $ns -o jsonpath='{.spec.template.metadata.annotations}' | grep -q restartedAt"
kubectl rollout status -n "$ns" deploy/flaky --timeout=180s
wait_for "recovered" is Remediating reason Recovered
break_pod
wait_for "the cooldown holding a second restart back" is RemediationBlocked reason Cooldown
kubectl get ahp -n "$ns"
echo "e2e passed"
