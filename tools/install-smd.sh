#!/usr/bin/env bash
# Builds target/tools/bin/smd-apply (tools/smd/main.go): server-side apply through Kubernetes' own
# structured-merge-diff library, which testserver/tests/smd.rs compares the API test server with.
# Everything comes from Debian bookworm's pool as .debs with pinned versions and SHA-256 sums (no
# apt lists needed, so a fresh CI machine works): the Go 1.19 toolchain, the library's Go source
# (golang-k8s-sigs-structured-merge-diff-dev 4.1.2) and the sources it imports. They are unpacked
# with dpkg-deb into target/tools/smd and the program is built offline (GOPATH mode, GOPROXY=off).
# Idempotent and quiet when the binary is there and tools/smd/main.go has not changed.
#
# usage: tools/install-smd.sh TOOLS_DIR
set -euo pipefail

tools=${1:?tools dir}
src_dir=$(cd "$(dirname "$0")/smd" && pwd)
bin=$tools/bin
root=$tools/smd
pool=http://deb.debian.org/debian/pool/main

# path in the pool, SHA-256
debs=(
  "g/golang-1.19/golang-1.19-go_1.19.8-2_amd64.deb 545123039b6c79e75cf2d86528781a825424cf33ce9d3f4513d772d7144cd531"
  "g/golang-1.19/golang-1.19-src_1.19.8-2_all.deb 2dfa82fe4f08f4e0193c532e561af4c91871f5235608f04f2bb8d57bb288df5a"
  "g/golang-k8s-sigs-structured-merge-diff/golang-k8s-sigs-structured-merge-diff-dev_4.1.2+ds1-2_all.deb 83cd65e58e64b0847c313edff66faa8c025568cad122d9a72107c0415b954415"
  "g/golang-github-json-iterator-go/golang-github-json-iterator-go-dev_1.1.12-1_all.deb b03bbfae7e679be899cd583e2560de92e652979c40a8c44816ff8c8d25e1a5fe"
  "g/golang-github-modern-go-concurrent/golang-github-modern-go-concurrent-dev_1.0.3-1.1_all.deb d49fedf2c7a250b2e7b720d37539995a78964b66a61327f466c67a94bab82999"
  "g/golang-github-modern-go-reflect2/golang-github-modern-go-reflect2-dev_1.0.2-2_all.deb af150a5172cf4c19bb321a53e67103e7fb18d07c1baa1e816a235155265d3948"
  "g/golang-yaml.v2/golang-gopkg-yaml.v2-dev_2.4.0-4_all.deb cc805f37a67e8c2f5e7f7e882a0db09d173db20421af316ec81d3961f865f5d9"
)

# The stamp names the pinned packages and the program's source: a change to either rebuilds.
stamp_id=$( { printf '%s\n' "${debs[@]}"; cat "$src_dir/main.go"; } | sha256sum | cut -c1-16)
stamp=$root/.built-$stamp_id
if [[ -x $bin/smd-apply && -e $stamp ]]; then
  exit 0
fi

need() {
  command -v "$1" >/dev/null || { echo "tools: $1 is needed to build smd-apply" >&2; exit 1; }
}
if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
  echo "tools: smd-apply is built from Debian's amd64 Go toolchain; not on $(uname -s)/$(uname -m)" >&2
  exit 1
fi
need curl
need dpkg-deb
need sha256sum

start=$SECONDS
echo "tools: building smd-apply (Go 1.19 and structured-merge-diff 4.1.2 from Debian) into $bin" >&2
rm -rf "$root"
mkdir -p "$root/debs" "$root/root" "$bin"
for entry in "${debs[@]}"; do
  read -r path sum <<<"$entry"
  deb=$root/debs/$(basename "$path")
  curl -fsSL --retry 3 -o "$deb" "$pool/${path//+/%2b}"
  echo "$sum  $deb" | sha256sum -c --quiet - || { echo "tools: checksum mismatch for $path" >&2; exit 1; }
  dpkg-deb -x "$deb" "$root/root"
done
rm -rf "$root/debs"

# The library's import path is sigs.k8s.io/structured-merge-diff/v4; Debian ships it without the
# /v4, so a small GOPATH of our own maps it, beside Debian's gocode tree for the rest.
gocode=$root/root/usr/share/gocode
mkdir -p "$root/gopath/src/sigs.k8s.io/structured-merge-diff"
ln -s "$gocode/src/sigs.k8s.io/structured-merge-diff" "$root/gopath/src/sigs.k8s.io/structured-merge-diff/v4"

env -u GOENV \
  GOROOT="$root/root/usr/lib/go-1.19" \
  GOPATH="$root/gopath:$gocode" \
  GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 \
  GOCACHE="$root/cache" HOME="$root" \
  "$root/root/usr/lib/go-1.19/bin/go" build -o "$bin/smd-apply.new" "$src_dir/main.go"
mv -f "$bin/smd-apply.new" "$bin/smd-apply"
# The toolchain is only needed to build: keep the library's source (for reference), drop the rest.
rm -rf "$root/root/usr/lib/go-1.19" "$root/root/usr/share/go-1.19" "$root/cache"
touch "$stamp"
echo "tools: smd-apply built in $((SECONDS - start))s" >&2
