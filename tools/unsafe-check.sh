#!/usr/bin/env bash
# "No unsafe in any crate": every package in the repository (the workspace's members and fuzz/,
# which is outside it) must forbid unsafe code for all its targets, in its Cargo.toml:
#   [lints.rust]
#   unsafe_code = "forbid"
# (or `[lints] workspace = true` with that under `[workspace.lints.rust]` of the root Cargo.toml).
# A `#![forbid(unsafe_code)]` in lib.rs/main.rs alone does not count: it misses tests, examples and
# benches, which are crates of their own. Fails naming each package that does not.
#
# usage: tools/unsafe-check.sh   (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# Prints the value of `key` in TOML section `section` of file (first match, quotes kept).
toml_value() {
  local file=$1 section=$2 key=$3
  awk -v section="[$section]" -v key="$key" '
    /^[[:space:]]*\[/ { gsub(/[[:space:]]/, ""); in_section = ($0 == section); next }
    in_section {
      line = $0; sub(/#.*/, "", line)
      if (match(line, "^[[:space:]]*" key "[[:space:]]*=")) {
        v = substr(line, RLENGTH + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v); print v; exit
      }
    }' "$file"
}

forbids() {
  [[ $1 == '"forbid"' || $1 =~ level[[:space:]]*=[[:space:]]*\"forbid\" ]]
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t manifests < <(git ls-files --cached --others --exclude-standard '*Cargo.toml' 'Cargo.toml')
else
  mapfile -t manifests < <(find . -name Cargo.toml -not -path '*/target/*' | sed 's|^\./||')
fi

workspace_forbids=false
if forbids "$(toml_value Cargo.toml workspace.lints.rust unsafe_code)"; then
  workspace_forbids=true
fi

checked=0
missing=()
for manifest in "${manifests[@]}"; do
  grep -q '^\[package\]' "$manifest" || continue
  checked=$((checked + 1))
  if forbids "$(toml_value "$manifest" lints.rust unsafe_code)"; then
    continue
  fi
  if $workspace_forbids && [[ $(toml_value "$manifest" lints workspace) == true ]]; then
    continue
  fi
  missing+=("$manifest")
done

if ((checked == 0)); then
  echo "unsafe-check: found no packages" >&2
  exit 1
fi
if ((${#missing[@]} > 0)); then
  for manifest in "${missing[@]}"; do
    echo "unsafe-check: $manifest does not forbid unsafe code: add [lints.rust] unsafe_code = \"forbid\"" >&2
  done
  exit 1
fi
echo "unsafe-check: all $checked packages forbid unsafe code"
