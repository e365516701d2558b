#!/usr/bin/env bash
# Builds the Argo Rollouts controller (rollouts-controller) from the wrapper module next to this
# script, once, and copies the Rollouts CRDs (Rollout, AnalysisRun, AnalysisTemplate,
# ClusterAnalysisTemplate, Experiment) out of the same module into crds/ beside it. Prints the
# directory that holds them. Cached twice, keyed by the version and the hash of the wrapper module
# and this script, like tools/kube/build.sh:
#   target/argo/bin/<key>/                                   (in the tree)
#   $APPHEALTH_KUBE_CACHE/argo-rollouts-<key>/               (default ~/.cache/apphealth-operator/kube:
#                                                             survives `cargo clean` and fresh clones)
# Built as upstream's Makefile does (CGO_ENABLED=0), plus -trimpath and stripped, with the version
# stamped into utils/version (without it the controller says v99.99.99+unknown).
#
# Install the CRDs with `kubectl apply --server-side -f <dir>/crds` (or `kubectl create`): four of
# the five are over the 256 KiB that client-side apply's last-applied annotation may hold.
# Out of a cluster the controller wants --kubeconfig, --leader-elect=false (or POD_NAMESPACE set to
# a namespace that exists: its Lease goes there, "argo-rollouts" by default), and its metrics and
# healthz ports (8090, 8080) moved if those are taken: it listens on 0.0.0.0, not only loopback.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
upstream=github.com/argoproj/argo-rollouts
say() { echo "tools/argo: $*" >&2; }

command -v go >/dev/null 2>&1 || { say "Go is needed to build the Argo Rollouts controller, and 'go' is not on PATH"; exit 1; }
need="$(go mod edit -json "$here/rollouts/go.mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')"
have="$(go env GOVERSION)"; have="${have#go}"
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  say "Go $need or newer is needed to build the Argo Rollouts controller; this machine has Go $have"; exit 1
fi

version="$(sed -n 's/^\tgithub.com\/argoproj\/argo-rollouts \(v[^ ]*\).*/\1/p' "$here/rollouts/go.mod")"
[ -n "$version" ] || { say "tools/argo/rollouts/go.mod requires no $upstream"; exit 1; }
key="$version-$(cat "$here/rollouts/go.mod" "$here/rollouts/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
out="$top/target/argo/bin/$key"
cache="${APPHEALTH_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apphealth-operator/kube}/argo-rollouts-$key"
complete() { [ -x "$1/rollouts-controller" ] && [ -e "$1/crds/rollout-crd.yaml" ]; }

if complete "$out"; then echo "$out"; exit 0; fi
if complete "$cache"; then
  mkdir -p "$out"
  cp -rl "$cache"/. "$out"/ 2>/dev/null || cp -r "$cache"/. "$out"/
  echo "$out"; exit 0
fi

# Download first, so that an unreachable module proxy is one clear line rather than a build log.
if ! err="$(cd "$here/rollouts" && go mod download 2>&1)"; then
  say "cannot download Argo Rollouts' Go modules from $(go env GOPROXY): $(printf '%s\n' "$err" | tail -n 1)"
  exit 1
fi

mkdir -p "$top/target/argo"
build="$(mktemp -d "$top/target/argo/build.XXXXXX")"
trap 'rm -rf "$build"' EXIT
chmod 755 "$build"
say "building the Argo Rollouts controller $version from its Go module (once; about 4 minutes on 2 cores with a cold cache)"
# upstream's Makefile: version is the tag without its v; gitTreeState=clean. The release commit is
# not known from the module proxy, so the controller reports v<version>+unknown. buildDate is the
# module's publication time, so that the build is reproducible.
release_time="$(cd "$here/rollouts" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$upstream")"
ldflags="-s -w -X $upstream/utils/version.version=${version#v} -X $upstream/utils/version.gitTreeState=clean"
ldflags+=" -X $upstream/utils/version.buildDate=$release_time"
(cd "$here/rollouts" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$build/rollouts-controller" \
  "$upstream/cmd/rollouts-controller")

# The CRDs of the same release, as upstream installs them (manifests/crds, without its kustomization).
dir="$(cd "$here/rollouts" && go list -m -f '{{.Dir}}' "$upstream")"
mkdir -p "$build/crds"
cp "$dir"/manifests/crds/*-crd.yaml "$build/crds/"
chmod -R u+w "$build/crds"

mkdir -p "$(dirname "$cache")" "$(dirname "$out")"
rm -rf "$cache.tmp" && cp -r "$build" "$cache.tmp" && rm -rf "$cache" && mv "$cache.tmp" "$cache"
rm -rf "$out" && mv "$build" "$out"
trap - EXIT
echo "$out"
