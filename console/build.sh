#!/bin/sh
# Builds the console's front end: console/web (our code, ECharts from npm)
# into console/dist, which is committed and embedded in the binary
# (go:embed), so that a fresh clone builds without npm. Run after editing
# console/web; needs node and npm (node 20).
#   console/build.sh          rebuild console/dist
#   console/build.sh --check  build into a temporary directory and fail if
#                             console/dist differs (make test runs it)
set -eu
cd "$(dirname "$0")/web"
out=../dist
if [ "${1:-}" = "--check" ]; then
  if ! command -v npm >/dev/null; then
    echo "console/build.sh --check: no npm here, console/dist not checked against console/web"
    exit 0
  fi
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
rm -rf "$out"
mkdir -p "$out"
npx --no-install esbuild main.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=external --outfile="$out/app.js" --log-level=warning
cp index.html style.css "$out/"
if [ "${1:-}" = "--check" ]; then
  if ! diff -r -q "$out" ../dist; then
    echo "console/dist is not the build of console/web: run make console and commit console/dist" >&2
    exit 1
  fi
  echo "console/dist matches console/web"
  exit 0
fi
echo "console/dist: $(du -sh "$out" | cut -f1)"
