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
# start BINARY HTTP NETFLOW: `BINARY run` on a fresh data directory, pinned
# to CPU 1, NetFlow on 127.0.0.1:NETFLOW only; returns once it is healthy.
start() {
  rm -rf "$work/data"
  FLOWLENS_DATA_DIR="$work/data" FLOWLENS_HTTP_LISTEN=127.0.0.1:$2 FLOWLENS_NETFLOW_LISTEN=127.0.0.1:$3 \
    FLOWLENS_IPFIX_LISTEN= FLOWLENS_SFLOW_LISTEN= taskset -c 1 "$1" run >"$work/run.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$2/healthz" >/dev/null && break; sleep 0.1; done
}
