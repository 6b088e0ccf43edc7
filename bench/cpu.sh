#!/usr/bin/env bash
# CPU per record: flowlens binaries (or wrapper scripts that exec one)
# alternated at one NetFlow v9 rate below saturation; for each trial the
# daemon's CPU time (user + system, /proc) over the run divided by the rows
# it stored. On a CPU-bound core the loss-free rate is about the inverse,
# and this figure is far steadier than a bisection of loss-free rates.
# Usage: bench/cpu.sh RATE PAIRS BINARY...
# Generator on CPU 0, daemon on CPU 1, loopback only, 8 s per trial.
set -euo pipefail
rate=$1 pairs=$2; shift 2
. "$(dirname "$0")/lib.sh"
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
trial() {
  start "$1" 18191 12191
  sleep 1
  c0=$(cpu "$pid")
  sent=$(taskset -c 0 "$flowgen" -addr 127.0.0.1:12191 -rate "$rate" -duration 8s | grep -o '"records":[0-9]*' | cut -d: -f2)
  sleep 4 # the last batch and its merges
  c1=$(cpu "$pid")
  stored=$(curl -s 127.0.0.1:18191/metrics | awk '/^flowlens_store_rows_total/ {printf "%d", $2}')
  kill "$pid"; wait "$pid" || true; pid=
  awk -v b="$(basename "$1")" -v s="$sent" -v t="$stored" -v c=$((c1 - c0)) -v hz="$ticks" \
    'BEGIN {printf "%s sent=%d stored=%d cpu=%.2fs us/record=%.3f\n", b, s, t, c/hz, 1e6*c/hz/t}'
}
for _ in $(seq "$pairs"); do for b in "$@"; do trial "$b"; done; done
