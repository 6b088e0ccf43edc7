# Sourced by bench/paired.sh and bench/cpu.sh: libchdb, the generator, a
# work directory, and a trap that stops the daemon under test ($pid).
top=$(cd "$(dirname "$0")/.." && pwd)
: "${CHDB_LIB_PATH:=$(ls "$top"/.cache/chdb/*/libchdb.so | head -1)}"
export CHDB_LIB_PATH
flowgen=${FLOWGEN:-$top/.cache/bin/flowgen}
[ -x "$flowgen" ] || (cd "$top" && go build -o "$flowgen" ./tools/flowgen)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
