#!/usr/bin/env bash
# Unpacks Prometheus blackbox_exporter (the Debian package prometheus-blackbox-exporter), the peer of
# `make bench`, into TOOLS_DIR without installing it system-wide: `apt-get download` fetches the
# .deb (no root needed once the package lists exist; as root it runs `apt-get update` first when
# the package is unknown) and `dpkg -x` unpacks it. The binary lands in
# TOOLS_DIR/blackbox/usr/bin/prometheus-blackbox-exporter. Quiet when it is there already.
#
# usage: tools/install-blackbox.sh TOOLS_DIR
set -euo pipefail

tools=${1:?tools dir}
root=$tools/blackbox
binary=$root/usr/bin/prometheus-blackbox-exporter
package=prometheus-blackbox-exporter

if [[ -x $binary ]]; then
  exit 0
fi
for cmd in apt-get apt-cache dpkg; do
  command -v "$cmd" >/dev/null || { echo "bench: $cmd is needed to unpack $package (a Debian package)" >&2; exit 1; }
done
if ! apt-cache show "$package" >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]]; then
    echo "bench: $package unknown to apt; running apt-get update" >&2
    apt-get update -qq >&2
  else
    echo "bench: $package unknown to apt; run 'apt-get update' as root first" >&2
    exit 1
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "bench: downloading $package with apt-get download into $root" >&2
# apt-get download drops privileges to the _apt user, which must be able to write there.
chmod 777 "$tmp"
(cd "$tmp" && apt-get download -qq "$package" >&2)
deb=$(ls "$tmp"/"$package"_*.deb)
mkdir -p "$root"
dpkg -x "$deb" "$root"
[[ -x $binary ]] || { echo "bench: $deb has no $binary" >&2; exit 1; }
