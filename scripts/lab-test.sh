#!/usr/bin/env bash
# The lab stack end to end, for a machine with a Docker daemon (`make lab-test`):
#   1. builds and starts docker-compose.yml; waits until every long-running service is
#      healthy and the one-shots (kafka-init, migrate) exited 0;
#   2. runs the ClickHouse server tests (sink/clickhouse) against the stack's ClickHouse;
#   3. smoke test: softflowd replays a capture of ../shared/corpus/dpi as NetFlow v9 to
#      UDP 2055 (collect → Kafka → land → ClickHouse), then it waits, bounded, until
#      `SELECT count() FROM flows` (HTTP :8123) has grown.
# The stack stays up afterwards, so you can look at Grafana (http://localhost:3000);
# LAB_DOWN=1 stops it at the end (`docker compose down`, data volumes kept).
#
# Settings: LAB_PCAP       capture to replay (default: dropbox.pcap, else the first .pcap found)
#           LAB_TIMEOUT    seconds for each wait (default 300)
#           LAB_DOWN=1     stop the stack at the end
#           FLOWLENS_CLICKHOUSE_PASSWORD   as for docker-compose.yml (default flowlens)
# Without a Docker daemon use scripts/compose-check.sh, which validates the same files.
set -euo pipefail
cd "$(dirname "$0")/.."

timeout=${LAB_TIMEOUT:-300}
password=${FLOWLENS_CLICKHOUSE_PASSWORD:-flowlens}
corpus=../shared/corpus/dpi

say() { echo "lab-test: $*"; }
fail() { echo "lab-test: FAIL: $*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  fail "neither 'docker compose' nor docker-compose is installed"
fi
docker info >/dev/null 2>&1 || fail "no Docker daemon answers 'docker info' (scripts/compose-check.sh validates the stack without one)"
command -v go >/dev/null 2>&1 || fail "go is not on PATH"
scripts/apt-deps.sh softflowd:softflowd

work=$(mktemp -d)
sf_pid=""
cleanup() {
  if [ -n "$sf_pid" ] && kill -0 "$sf_pid" 2>/dev/null; then kill "$sf_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. the stack -----------------------------------------------------------------------
say "building and starting the stack (${compose[*]} up -d --build)"
if ! "${compose[@]}" up -d --build; then
  "${compose[@]}" logs --tail 50 kafka-init migrate >&2 || true
  fail "the stack did not start"
fi

# Compose v1 has no --wait, and v2's --wait treats one-shots differently across versions:
# poll Docker's health status ourselves, for both.
status_of() { # container id -> healthy | unhealthy | starting | exited | ...
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1" 2>/dev/null || echo missing
}
deadline=$((SECONDS + timeout))
for svc in clickhouse kafka collect land prometheus grafana; do
  while :; do
    ids=$("${compose[@]}" ps -q "$svc")
    state=healthy
    [ -n "$ids" ] || state=missing
    for id in $ids; do
      s=$(status_of "$id")
      [ "$s" = healthy ] || state=$s
    done
    [ "$state" = healthy ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      "${compose[@]}" logs --tail 50 "$svc" >&2 || true
      fail "service $svc is $state after ${timeout}s"
    fi
    sleep 3
  done
  say "$svc is healthy"
done
for svc in kafka-init migrate; do
  id=$("${compose[@]}" ps -a -q "$svc" | head -n 1)
  [ -n "$id" ] || fail "one-shot $svc never ran"
  rc=$(docker inspect -f '{{.State.ExitCode}}' "$id")
  [ "$rc" = 0 ] || { "${compose[@]}" logs --tail 50 "$svc" >&2; fail "one-shot $svc exited $rc"; }
  say "$svc completed"
done

# --- 2. the ClickHouse server tests -------------------------------------------------------
# The server tests run when CLICKHOUSE_ADDR is set; each works in a database of its own.
# ClickHouse publishes 9000 on loopback only, and from the host the connection comes through
# Docker's bridge, so they log in as flowlens (user default is local to the container).
# With FLOWLENS_CLICKHOUSE_CLUSTER=flowlens they run on the one-node cluster too.
say "go test ./sink/clickhouse/ against localhost:9000"
test_rc=0
FLOWLENS_TEST_CLICKHOUSE=1 CLICKHOUSE_ADDR=localhost:9000 \
  CLICKHOUSE_USER=flowlens CLICKHOUSE_PASSWORD="$password" \
  CLICKHOUSE_CLUSTER="${FLOWLENS_CLICKHOUSE_CLUSTER:-}" \
  go test ./sink/clickhouse/ -count=1 -v || test_rc=$?

# --- 3. smoke test: flows through the whole path -----------------------------------------
count_rows() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 10 -H "X-ClickHouse-User: flowlens" -H "X-ClickHouse-Key: $password" \
      'http://localhost:8123/?database=flowlens' --data-binary 'SELECT count() FROM flows'
  else
    "${compose[@]}" exec -T clickhouse clickhouse-client --database flowlens --query 'SELECT count() FROM flows'
  fi
}

pcap=${LAB_PCAP:-}
if [ -z "$pcap" ]; then
  if [ -f "$corpus/public/dropbox.pcap" ]; then
    pcap=$corpus/public/dropbox.pcap
  else
    pcap=$(find "$corpus" -name '*.pcap' -type f 2>/dev/null | sort | head -n 1)
  fi
fi
[ -n "$pcap" ] && [ -f "$pcap" ] || fail "no capture to replay (set LAB_PCAP, or put ../shared/corpus/dpi beside the repo)"

before=$(count_rows) || fail "cannot query ClickHouse over HTTP on localhost:8123"
say "flows holds $before rows; replaying $pcap with softflowd (NetFlow v9 to 127.0.0.1:2055)"

# softflowd 1.1.0 does not always exit at the end of a file: wait until its packet count
# stops moving (or it exits), then shut it down through its control socket, which expires
# and exports every flow.
ln -s "$(cd "$(dirname "$pcap")" && pwd)/$(basename "$pcap")" "$work/in.pcap"
(cd "$work" && exec softflowd -D -r in.pcap -n 127.0.0.1:2055 -v 9 -p "$work/sf.pid" -c "$work/sf.ctl") \
  >"$work/softflowd.log" 2>&1 &
sf_pid=$!
last="" stable=0 sf_deadline=$((SECONDS + 60))
while kill -0 "$sf_pid" 2>/dev/null && [ "$SECONDS" -lt "$sf_deadline" ]; do
  n=$(softflowctl -c "$work/sf.ctl" statistics 2>/dev/null | sed -n 's/^Packets processed: *\([0-9]*\).*/\1/p' || true) # no socket yet: retry
  if [ -n "$n" ] && [ "$n" != 0 ] && [ "$n" = "$last" ]; then
    stable=$((stable + 1))
    [ "$stable" -ge 2 ] && break
  else
    stable=0
  fi
  last=$n
  sleep 0.5
done
softflowctl -c "$work/sf.ctl" shutdown >/dev/null 2>&1 || true
for _ in $(seq 1 60); do kill -0 "$sf_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$sf_pid" 2>/dev/null; then
  kill "$sf_pid" 2>/dev/null || true
  cat "$work/softflowd.log" >&2
  fail "softflowd did not stop"
fi
wait "$sf_pid" 2>/dev/null || true
sf_pid=""
say "softflowd processed ${last:-?} packets"

deadline=$((SECONDS + timeout))
while :; do
  now=$(count_rows 2>/dev/null || echo "$before")
  [ "$now" -gt "$before" ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    "${compose[@]}" logs --tail 30 collect land >&2 || true
    fail "no new rows in flows after ${timeout}s (still $now)"
  fi
  sleep 2
done
say "ok: flows grew from $before to $now rows (collect → Kafka → land → ClickHouse)"

if [ "${LAB_DOWN:-0}" = 1 ]; then
  "${compose[@]}" down
  say "stack stopped (data volumes kept; '${compose[*]} down -v' deletes them)"
else
  say "the stack is still up: Grafana http://localhost:3000 (admin / \${GRAFANA_ADMIN_PASSWORD:-admin}); stop it with '${compose[*]} down'"
fi
[ "$test_rc" = 0 ] || fail "go test ./sink/clickhouse/ failed (exit $test_rc)"
say "all passed"
