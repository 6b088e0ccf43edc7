#!/usr/bin/env bash
# Paired trials: two flowlens binaries alternated at one NetFlow v9 rate, to
# compare builds more finely than the bisection of bench/e2e.sh.
# Usage: bench/paired.sh OLD_BINARY NEW_BINARY RATE [PAIRS]
# Needs libchdb (make chdb) and flowgen (bench/e2e.sh builds it into .cache/bin).
# Generator on CPU 0, receiver on CPU 1, loopback only, 5 s per trial.
set -euo pipefail
old=$1 new=$2 rate=$3 pairs=${4:-5}
. "$(dirname "$0")/lib.sh"
trial() {
  start "$1" 18190 12190
  sent=$(taskset -c 0 "$flowgen" -addr 127.0.0.1:12190 -rate "$rate" -duration 5s | grep -o '"records":[0-9]*' | cut -d: -f2)
  sleep 6
  stored=$(curl -s 127.0.0.1:18190/metrics | awk '/^flowlens_store_rows_total/ {printf "%d", $2}')
  kill "$pid"; wait "$pid" || true; pid=
  awk -v b="$(basename "$1")" -v r="$rate" -v s="$sent" -v t="$stored" 'BEGIN {printf "%s rate=%d sent=%d stored=%d loss=%.2f%%\n", b, r, s, t, 100*(1-t/s)}'
}
for _ in $(seq "$pairs"); do trial "$old"; trial "$new"; done
