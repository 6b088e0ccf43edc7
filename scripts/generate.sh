#!/usr/bin/env bash
# Generates the Go code of schema/flow.proto into schema/flowpb/ with protoc
# and protoc-gen-go at the google.golang.org/protobuf version go.mod
# requires, so the generated code always matches the runtime it links with.
#
# Usage: scripts/generate.sh           rewrite schema/flowpb/*.pb.go
#        scripts/generate.sh --check   regenerate into a temporary directory
#                                      and fail when the committed files differ
#
# Installs what is missing: Debian's protobuf-compiler (through apt-deps.sh,
# as root or with sudo) and protoc-gen-go into .cache/bin. Once both are
# there a --check run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
GO=${GO:-go}

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# Paths relative to the repository root: protoc runs with -I . so the
# descriptor registers the file as "schema/flow.proto", a path no other
# module's "flow.proto" collides with in the global registry.
protos=(schema/flow.proto)
outdir=schema/flowpb

if ! command -v protoc >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "generate: protoc not found; install the protobuf compiler (Debian: protobuf-compiler)" >&2
    exit 1
  fi
  scripts/apt-deps.sh protoc:protobuf-compiler
fi

version=$($GO list -m -f '{{.Version}}' google.golang.org/protobuf)
module=$($GO list -m -f '{{.Path}}')
bin=$root/.cache/bin
if [ "$("$bin/protoc-gen-go" --version 2>/dev/null || true)" != "protoc-gen-go $version" ]; then
  echo "generate: installing protoc-gen-go $version into .cache/bin" >&2
  GOBIN=$bin $GO install "google.golang.org/protobuf/cmd/protoc-gen-go@$version"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# module= strips the module path from go_package ("flowlens/schema/flowpb"),
# so the file lands in schema/flowpb/ whatever the proto's own directory.
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" -I . \
  --go_out="$tmp" --go_opt="module=$module" "${protos[@]}"

if ! $check; then
  mkdir -p "$outdir"
  rm -f "$outdir"/*.pb.go
  cp "$tmp/$outdir"/*.pb.go "$outdir"/
  (cd "$tmp" && for f in "$outdir"/*.pb.go; do echo "generate: wrote $f" >&2; done)
  exit 0
fi

# The header names the protoc that ran ("// 	protoc        v3.21.12"); a
# developer's newer protoc produces the same code for this proto3 file, so
# that one comment line is not compared. protoc-gen-go's version is pinned
# above and is compared.
strip() { grep -v '^//[[:space:]]*protoc[[:space:]]\+v\?[0-9(]' "$1" || true; }
stale=()
for f in "$tmp/$outdir"/*.pb.go; do
  rel=$outdir/${f##*/}
  if [ ! -f "$rel" ]; then
    stale+=("$rel (missing)")
  elif ! diff -u --label "$rel (committed)" --label "$rel (generated)" \
      <(strip "$rel") <(strip "$f") >"$tmp/diff"; then
    stale+=("$rel")
    head -n 40 "$tmp/diff" >&2
  fi
done
for f in "$outdir"/*.pb.go; do
  [ -e "$f" ] || continue
  [ -f "$tmp/$f" ] || stale+=("$f (no longer generated)")
done
if [ ${#stale[@]} -gt 0 ]; then
  echo "generate: stale generated code: ${stale[*]}: run make generate" >&2
  exit 1
fi
