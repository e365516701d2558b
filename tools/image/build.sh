#!/usr/bin/env bash
# `make image` (operator) and `make image-flaky-app` (flaky-app): builds an image without a
# container engine. A static (musl) release binary from cargo, then the Go program next to this
# script (main.go) writes it, with users and Debian's CA certificates, FROM scratch as an OCI image
# layout and a `docker load` tarball in target/image, and checks the result (`inspect`):
#   operator   target/image/oci/            target/image/apphealth-operator.tar
#   flaky-app  target/image/flaky-app-oci/  target/image/flaky-app.tar
# Named after the chart's default image: values.yaml image.repository, Chart.yaml appVersion (the
# flaky app: the same registry and owner, as examples/e2e.sh names it). Times are SOURCE_DATE_EPOCH
# (0 when unset), so the same binary gives the same digest. Needs Go 1.25 or newer and the Go module
# proxy (once), the Rust target x86_64-unknown-linux-musl, musl-gcc (ring compiles C) and Debian's
# CA certificates; it installs the last two with apt-get (musl-tools, ca-certificates) when missing.
set -euo pipefail
what="${1:-operator}"
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
cd "$top"
say() { echo "make image: $*" >&2; }
target=x86_64-unknown-linux-musl
cargo="${CARGO:-cargo}"
out="$top/target/image"
chart=charts/apphealth-operator

version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$chart/Chart.yaml")"
repository="$(sed -n '/^image:/,/^[^ #]/s/^  repository: *\([^ ]*\).*/\1/p' "$chart/values.yaml")"
[ -n "$version" ] && [ -n "$repository" ] \
  || { say "cannot read appVersion from $chart/Chart.yaml or image.repository from $chart/values.yaml"; exit 1; }
crate_version="$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[ "$crate_version" = "$version" ] \
  || say "warning: the chart's appVersion is $version, the crate's version $crate_version; the image is tagged $version"

case "$what" in
  operator)
    ref="$repository:$version" layout="$out/oci" tarball="$out/apphealth-operator.tar"
    build=(--bin apphealth-operator) bin="release/apphealth-operator"
    config=(-cmd '["run"]' -label "org.opencontainers.image.title=apphealth-operator"
      -label "org.opencontainers.image.description=Kubernetes operator that probes applications and remediates them with guardrails") ;;
  flaky-app)
    ref="${repository%/*}/flaky-app:$version" layout="$out/flaky-app-oci" tarball="$out/flaky-app.tar"
    build=(--example flaky-app) bin="release/examples/flaky-app"
    config=(-entrypoint '["/flaky-app", "--listen", "0.0.0.0:8080"]' -label "org.opencontainers.image.title=flaky-app"
      -label "org.opencontainers.image.description=apphealth-operator's flaky demo app") ;;
  *) say "usage: $0 [operator|flaky-app]"; exit 2 ;;
esac

# The tools, first, so that a missing one is one line rather than a build log.
command -v go >/dev/null 2>&1 || { say "Go 1.25 or newer is needed (tools/image), and 'go' is not on PATH"; exit 1; }
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
  say "adding the Rust target $target (rustup target add)"
  rustup target add "$target" >/dev/null 2>&1 \
    || { say "the Rust target $target is missing and 'rustup target add $target' failed"; exit 1; }
fi
ca=/etc/ssl/certs/ca-certificates.crt
missing=()
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
[ -s "$ca" ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from Debian (musl-gcc: ring compiles C for the static binary; $ca)"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq "$@" >/dev/null 2>&1; }
  apt_get install -y "${missing[@]}" || { apt_get update && apt_get install -y "${missing[@]}"; } \
    || { say "'apt-get install ${missing[*]}' failed (it needs root or sudo, and the Debian archive): install them and run it again"; exit 1; }
fi

mkdir -p "$out/bin"
(cd "$here" && go build -trimpath -o "$out/bin/image" .) \
  || { say "cannot build tools/image (its modules come from $(go env GOPROXY))"; exit 1; }

CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}" \
  "$cargo" build --release --locked --target "$target" "${build[@]}"

"$out/bin/image" build -binary "${CARGO_TARGET_DIR:-$top/target}/$target/$bin" -ref "$ref" \
  -layout "$layout" -tar "$tarball" -ca "$ca" -expose 8080/tcp "${config[@]}" \
  -label "org.opencontainers.image.version=$version" -label "org.opencontainers.image.licenses=Apache-2.0" \
  -label "org.opencontainers.image.source=${IMAGE_SOURCE:-https://github.com/${repository#*/}}"
"$out/bin/image" inspect -layout "$layout"
echo "$ref: $layout (OCI image layout), $tarball (docker load / podman load)"
