#!/usr/bin/env bash
# Fetches libchdb (the ClickHouse engine as a shared library) into a cache.
# Usage: fetch-chdb.sh VERSION DEST/libchdb.so
# First choice: the npm package @chdb/lib-linux-x64-gnu (npm registry);
# fallback where npm is absent: the chDB release archive.
set -euo pipefail
version=$1
dest=$2
[ -s "$dest" ] && exit 0
dir=$(dirname "$dest")
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if command -v npm >/dev/null 2>&1; then
  echo "fetching libchdb $version with npm" >&2
  (cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null)
  tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-*.tgz -C "$tmp" package/libchdb.so
  mv "$tmp/package/libchdb.so" "$dest.part"
else
  echo "npm not found: fetching the chDB v$version release archive" >&2
  curl -fsSL "https://github.com/chdb-io/chdb/releases/download/v$version/linux-x86_64-libchdb.tar.gz" -o "$tmp/libchdb.tar.gz"
  tar -xzf "$tmp/libchdb.tar.gz" -C "$tmp"
  mv "$(find "$tmp" -name libchdb.so | head -1)" "$dest.part"
fi
mv "$dest.part" "$dest"
echo "libchdb $version in $dest" >&2
