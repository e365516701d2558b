#!/usr/bin/env bash
# Offline checks of the Helm chart: `helm lint` and `helm template` in both RBAC modes, and the
# rendered manifests validated against the Kubernetes API's schemas with `kubernetes-validate
# --strict` (unknown fields are errors, as with kubectl's strict field validation).
#
# usage: tools/chart-check.sh CHART TOOLS_DIR KUBERNETES_VERSION
# helm comes from PATH (`make tools` puts it in TOOLS_DIR/bin), kubernetes-validate from
# TOOLS_DIR/venv.
set -euo pipefail

chart=${1:?chart dir}
tools=${2:?tools dir}
kube_version=${3:?Kubernetes version to validate against, e.g. 1.35.0}
validate=$tools/venv/bin/kubernetes-validate

command -v helm >/dev/null || { echo "chart-check: helm is not on PATH: run 'make tools'" >&2; exit 1; }
[[ -x $validate ]] || { echo "chart-check: $validate is missing: run 'make tools'" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# name | helm flags. Each mode with every optional object rendered (ServiceMonitor, PDB).
modes=(
  "cluster-wide|--set serviceMonitor.enabled=true --set dashboard.enabled=true"
  "namespaced|--set rbac.namespaced=true --set watchNamespaces={shop,payments} --set serviceMonitor.enabled=true"
  "one-replica-minimal-rights|--set replicas=1 --set permissions.collectDiagnostics=false --set permissions.restartPods=false --set permissions.rolloutRestart=false --set permissions.rollback=false --set permissions.scaleOut=false --set permissions.scaleUp=false --set permissions.notify=false"
  "sharded|--set replicas=3 --set sharding.shards=3"
)

status=0
for mode in "${modes[@]}"; do
  name=${mode%%|*}
  read -r -a flags <<<"${mode#*|}"
  helm lint --strict --quiet "$chart" --namespace apphealth-system "${flags[@]}" >"$out/$name.lint" 2>&1 || {
    echo "chart-check: helm lint ($name) failed:" >&2
    cat "$out/$name.lint" >&2
    status=1
    continue
  }
  helm template apphealth "$chart" --namespace apphealth-system --include-crds "${flags[@]}" >"$out/$name.yaml" || {
    echo "chart-check: helm template ($name) failed" >&2
    status=1
    continue
  }
  # kubernetes-validate knows the built-in kinds of each Kubernetes version (the CRD itself
  # included: apiextensions.k8s.io/v1 CustomResourceDefinition). A kind it has no schema for is
  # only a WARN with exit code 0, so any WARN fails here except the one kind it cannot know: the
  # prometheus-operator ServiceMonitor (monitoring.coreos.com/v1), which is a CRD of its own.
  report=$("$validate" --kubernetes-version "$kube_version" --strict --quiet "$out/$name.yaml") || {
    echo "chart-check: kubernetes-validate ($name) failed:" >&2
    echo "$report" >&2
    status=1
    continue
  }
  unexpected=$(grep '^WARN' <<<"$report" | grep -v 'kind ServiceMonitor with api version monitoring.coreos.com/v1' || true)
  if [[ -n $unexpected ]]; then
    echo "chart-check: kubernetes-validate ($name) could not validate:" >&2
    echo "$unexpected" >&2
    status=1
    continue
  fi
  kinds=$(grep '^kind: ' "$out/$name.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')
  echo "chart-check: $name: lint ok, valid for Kubernetes $kube_version ($kinds)"
done

# A namespaced install without namespaces must fail with a message that says what to set.
if helm template apphealth "$chart" --set rbac.namespaced=true >/dev/null 2>"$out/no-namespaces.err"; then
  echo "chart-check: rbac.namespaced=true without watchNamespaces rendered; it must fail" >&2
  status=1
elif ! grep -q 'set watchNamespaces' "$out/no-namespaces.err"; then
  echo "chart-check: rbac.namespaced=true without watchNamespaces failed without saying why:" >&2
  cat "$out/no-namespaces.err" >&2
  status=1
fi

exit $status
