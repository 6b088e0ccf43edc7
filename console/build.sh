#!/bin/sh
# Builds the console's front end: console/web (our code, ECharts from npm)
# into console/dist, which is committed and embedded in the binary
# (go:embed), so that a fresh clone builds without npm. Run after editing
# console/web; needs node and npm (node 20).
set -eu
cd "$(dirname "$0")/web"
npm ci --no-audit --no-fund --loglevel=error
rm -rf ../dist
mkdir -p ../dist
npx --no-install esbuild main.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=external --outfile=../dist/app.js --log-level=warning
cp index.html style.css ../dist/
echo "console/dist: $(du -sh ../dist | cut -f1)"
