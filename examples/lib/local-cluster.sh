# Shared by the demo and e2e scripts (sourced): the local control plane, the chart installed on it,
# the operator run as the chart's ServiceAccount, and the flaky app serving kwok's pods. Every
# process started here is stopped by stop_local (the callers trap it on EXIT).
# Needs: target/debug/{apphealth-cluster,apphealth-operator,examples/flaky-app} built, helm and
# kubectl in target/tools/bin (make tools), python3.

local_pids=()
local_dir=""

# start_local DIR: a control plane in DIR (binaries built once by tools/kube/build.sh); exports
# KUBECONFIG for it.
start_local() {
  local_dir="$1"
  local bin
  bin="$(./tools/kube/build.sh)"
  target/debug/apphealth-cluster down --dir "$local_dir" >/dev/null
  target/debug/apphealth-cluster up --dir "$local_dir" --bin "$bin"
  export KUBECONFIG="$PWD/$local_dir/kubeconfig"
}

stop_local() {
  local p
  for p in "${local_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${local_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -z "$local_dir" ] || target/debug/apphealth-cluster down --dir "$local_dir" >/dev/null || true
}

# install_chart RELEASE NAMESPACE WATCHED [--set ...]: the chart, its CRD through the API server's
# schema and CEL rules, its RBAC and its Deployment (kwok runs its pods: nothing in them).
install_chart() {
  local release="$1" ns="$2" watched="$3"
  shift 3
  helm install "$release" charts/apphealth-operator --namespace "$ns" --create-namespace --wait \
    --timeout 90s --set allowLoopback=true --set "watchNamespaces={$watched}" "$@" >/dev/null
}

# start_operator RELEASE NAMESPACE HTTP_ADDR LOG: the operator binary as one of the chart's pods
# would run it: the Deployment's args (--http-addr moved to HTTP_ADDR on loopback) and environment,
# authenticated by a token of the chart's ServiceAccount (TokenRequest API), so RBAC holds it to
# exactly what the chart grants.
start_operator() {
  local release="$1" ns="$2" http="$3" log="$4"
  local deploy pod account token kubeconfig
  deploy="$(kubectl get deploy -n "$ns" -l "app.kubernetes.io/instance=$release" -o json)"
  pod="$(kubectl get pod -n "$ns" -l "app.kubernetes.io/instance=$release" -o jsonpath='{.items[0].metadata.name}')"
  account="$(printf '%s' "$deploy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["spec"]["template"]["spec"]["serviceAccountName"])')"
  token="$(kubectl create token "$account" -n "$ns" --duration=2h)"
  kubeconfig="$(dirname "$log")/operator.kubeconfig"
  rm -f "$kubeconfig"
  local server ca
  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
  KUBECONFIG="$kubeconfig" kubectl config set-cluster local --server="$server" --certificate-authority="$ca" >/dev/null
  KUBECONFIG="$kubeconfig" kubectl config set-credentials "$account" --token="$token" >/dev/null
  KUBECONFIG="$kubeconfig" kubectl config set-context local --cluster=local --user="$account" --namespace="$ns" >/dev/null
  KUBECONFIG="$kubeconfig" kubectl config use-context local >/dev/null
  mapfile -t args < <(printf '%s' "$deploy" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["items"][0]["spec"]["template"]["spec"]["containers"][0]["args"]:
    print(a.split("=")[0] + "=" + sys.argv[1] if a.startswith("--http-addr=") else a)
' "$http")
  env POD_NAME="$pod" POD_NAMESPACE="$ns" RUST_LOG=info KUBECONFIG="$kubeconfig" \
    target/debug/apphealth-operator "${args[@]}" >"$log" 2>&1 &
  local_pids+=($!)
}

# serve_pods NAMESPACE CONTROL_ADDR LOG: the flaky app at every running pod's IP.
serve_pods() {
  target/debug/examples/flaky-app --pods-of "$1" --control "$2" >"$3" 2>&1 &
  local_pids+=($!)
}

# wait_for DESCRIPTION COMMAND...: bounded (PATIENCE seconds, default 120).
wait_for() {
  local what="$1"
  shift
  local deadline=$((SECONDS + ${PATIENCE:-120}))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "gave up waiting for $what" >&2
      return 1
    fi
    sleep 0.5
  done
}
