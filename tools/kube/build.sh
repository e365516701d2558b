#!/usr/bin/env bash
# Builds the local control plane's binaries from the wrapper modules next to this script, once:
# etcd, etcdctl, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, plus kwok's own
# Stage files (node and pod lifecycles) copied out of its module. Prints the directory that holds
# them. Cached twice, keyed by the versions and the hash of the wrapper modules and this script:
#   target/kube/bin/<key>/                     (what `make cluster` uses)
#   $APPHEALTH_KUBE_CACHE/<key>/               (default ~/.cache/apphealth-operator/kube: survives
#                                               `cargo clean` and fresh clones on the same machine)
# Built as upstream releases are: CGO_ENABLED=0, -trimpath, stripped, with the version stamped into
# k8s.io/component-base and client-go (without it /version says v0.0.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
say() { echo "make cluster: $*" >&2; }

command -v go >/dev/null 2>&1 || { say "Go 1.26 or newer is needed to build the local control plane, and 'go' is not on PATH"; exit 1; }
go_version="$(go env GOVERSION)"
case "$go_version" in
  go1.2[6-9]*|go1.[3-9][0-9]*) ;;
  *) say "Go 1.26 or newer is needed to build the local control plane; this machine has $go_version"; exit 1 ;;
esac

kube_version="$(sed -n 's/^\tk8s.io\/kubernetes \(v[^ ]*\).*/\1/p' "$here/kubernetes/go.mod")"
[ -n "$kube_version" ] || { say "tools/kube/kubernetes/go.mod requires no k8s.io/kubernetes"; exit 1; }
key="$kube_version-$(cat "$here"/*/go.mod "$here"/*/go.sum "$here/build.sh" | sha256sum | cut -c1-12)"
out="$top/target/kube/bin/$key"
cache="${APPHEALTH_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apphealth-operator/kube}/$key"
wanted=(etcd etcdctl kube-apiserver kube-controller-manager kube-scheduler kwok stages)
complete() { local d="$1" f; for f in "${wanted[@]}"; do [ -e "$d/$f" ] || return 1; done; }

if complete "$out"; then echo "$out"; exit 0; fi
if complete "$cache"; then
  mkdir -p "$out"
  cp -rl "$cache"/. "$out"/ 2>/dev/null || cp -r "$cache"/. "$out"/
  echo "$out"; exit 0
fi

# Download first, so that an unreachable module proxy is one clear line rather than a build log.
for m in kubernetes etcd kwok; do
  if ! err="$(cd "$here/$m" && go mod download 2>&1)"; then
    say "cannot download the control plane's Go modules from $(go env GOPROXY): $(printf '%s\n' "$err" | tail -n 1)"
    exit 1
  fi
done

build=$(mktemp -d "$top/target/kube-build.XXXXXX" 2>/dev/null || { mkdir -p "$top/target" && mktemp -d "$top/target/kube-build.XXXXXX"; })
trap 'rm -rf "$build"' EXIT
chmod 755 "$build"
say "building Kubernetes $kube_version, etcd and kwok from their Go modules (once; about 10 minutes on 2 cores with a cold cache)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  minor="${kube_version#v1.}"; minor="${minor%%.*}"
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
gobuild() { CGO_ENABLED=0 go build -trimpath "$@"; }
(cd "$here/kubernetes" && gobuild -ldflags "$ldflags" -o "$build/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
(cd "$here/etcd" && gobuild -ldflags "-s -w" -o "$build/etcd" go.etcd.io/etcd/server/v3 \
  && gobuild -ldflags "-s -w" -o "$build/etcdctl" go.etcd.io/etcd/etcdctl/v3)
(cd "$here/kwok" && gobuild -ldflags "-s -w" -o "$build/kwok" sigs.k8s.io/kwok/cmd/kwok)

# kwok's own Stages, from its module: nodes become Ready and keep a heartbeat Lease; pods become
# Running and Ready at once (the "fast" set) and are removed when deleted.
kwok_dir="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
mkdir -p "$build/stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cp "$kwok_dir/kustomize/stage/$f" "$build/stages/kwok-$(basename "$f")"
done
chmod -R u+w "$build/stages"

mkdir -p "$(dirname "$cache")" "$(dirname "$out")"
rm -rf "$cache.tmp" && cp -r "$build" "$cache.tmp" && rm -rf "$cache" && mv "$cache.tmp" "$cache"
rm -rf "$out" && mv "$build" "$out"
trap - EXIT
echo "$out"
