#!/usr/bin/env bash
# End-to-end loopback benchmark: the highest loss-free rate of NetFlow v9
# records per second that goflow2, nfcapd and flowlens each store, measured
# in the same run and reported as ratios against goflow2.
#
#   bench/e2e.sh                      # all targets
#   bench/e2e.sh goflow2 nfcapd       # some targets
#   bench/e2e.sh --quick              # short smoke run (1 s steps, few steps)
#   bench/e2e.sh flowlens flowlens-kafka flowlens-collect
#                                     # the Kafka paths against the embedded one
#
# It installs what it needs (nfdump from Debian, goflow2 v2.2.6 into
# .cache/bin), builds tools/flowgen and the driver (bench/e2e), and builds
# bin/flowlens from ./cmd/flowlens. Every setting is an environment
# variable; see docs/benchmarks.md for the list and the method.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${BENCH_CACHE:-$ROOT/.cache}
GOFLOW2_VERSION=v2.2.6

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
say() { printf 'e2e.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

quick=0
targets=()
for a in "$@"; do
	case $a in
	--quick | -quick) quick=1 ;;
	goflow2 | nfcapd | flowlens | flowlens-kafka | flowlens-collect) targets+=("$a") ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument '$a'" ;;
	esac
done
explicit=${#targets[@]}
((explicit)) || targets=(goflow2 nfcapd flowlens)
want() { [[ " ${targets[*]} " == *" $1 "* ]]; }

command -v go >/dev/null || die "go is required (https://go.dev/doc/install)"
command -v taskset >/dev/null || say "taskset not found (util-linux): generator and receiver will not be pinned"

export BENCH_WORKDIR=${BENCH_WORKDIR:-$CACHE/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$BENCH_WORKDIR" "$CACHE/bin"
: >"$BENCH_WORKDIR/pids"

# Every process the driver starts is in its own process group, listed by id
# in $BENCH_WORKDIR/pids; the driver ends them itself, and this trap makes
# sure of it if the driver is killed.
driver=
cleanup() {
	local pid
	if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
		kill -TERM "$driver" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$driver" 2>/dev/null || true
	fi
	while read -r pid; do
		[[ $pid =~ ^[0-9]+$ ]] || continue
		kill -0 "$pid" 2>/dev/null || continue
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		sleep 1
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	done <"$BENCH_WORKDIR/pids"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- peers -------------------------------------------------------------------

if want goflow2; then
	export GOFLOW2=${GOFLOW2:-$CACHE/bin/goflow2}
	# go install stamps no version into -v; the module version is in the binary.
	if ! go version -m "$GOFLOW2" 2>/dev/null | grep -q "mod.*github.com/netsampler/goflow2/v2[[:space:]]*$GOFLOW2_VERSION"; then
		say "installing goflow2 $GOFLOW2_VERSION into $CACHE/bin"
		GOBIN=$CACHE/bin go install "github.com/netsampler/goflow2/v2/cmd/goflow2@$GOFLOW2_VERSION"
		export GOFLOW2=$CACHE/bin/goflow2
	fi
fi

if want nfcapd; then
	if ! command -v nfcapd >/dev/null || ! command -v nfdump >/dev/null; then
		((EUID == 0)) || die "nfcapd missing: run 'sudo apt-get install -y nfdump' first"
		say "installing nfdump (Debian package)"
		apt-get install -y -qq nfdump >/dev/null 2>&1 ||
			{ apt-get update -qq && apt-get install -y -qq nfdump >/dev/null; }
	fi
	export NFCAPD=${NFCAPD:-$(command -v nfcapd)} NFDUMP=${NFDUMP:-$(command -v nfdump)}
fi

# --- flowlens ------------------------------------------------------------------

skipped=
if want flowlens || want flowlens-kafka || want flowlens-collect; then
	# The Makefile exports CHDB_LIB_PATH (.cache/chdb/VERSION/libchdb.so).
	if [[ -z ${CHDB_LIB_PATH:-} ]]; then
		CHDB_LIB_PATH=$CACHE/chdb/libchdb.so
		for f in "$CACHE"/chdb/*/libchdb.so; do [[ -f $f ]] && CHDB_LIB_PATH=$f; done
	fi
	export CHDB_LIB_PATH
	if [[ -z ${FLOWLENS:-} ]]; then
		export FLOWLENS=$ROOT/bin/flowlens
		if compgen -G "$ROOT/cmd/flowlens/*.go" >/dev/null; then
			say "building bin/flowlens"
			(cd "$ROOT" && go build -o bin/flowlens ./cmd/flowlens) ||
				skipped="go build ./cmd/flowlens failed"
		else
			skipped="no ./cmd/flowlens sources to build"
		fi
	fi
	if [[ -z $skipped && ! -x $FLOWLENS ]]; then
		skipped="$FLOWLENS is not an executable"
	fi
	if [[ -z $skipped && ! -f $CHDB_LIB_PATH ]]; then
		skipped="libchdb not found at $CHDB_LIB_PATH: run 'make chdb' (it fetches libchdb into .cache/chdb/) or set CHDB_LIB_PATH"
	fi
	if [[ -n $skipped ]]; then
		((explicit)) && die "flowlens: $skipped"
		say "flowlens: SKIPPED: $skipped"
		t=()
		for x in "${targets[@]}"; do [[ $x == flowlens* ]] || t+=("$x"); done
		targets=("${t[@]}")
	fi
fi
((${#targets[@]})) || die "no target left to measure"

# --- our tools -------------------------------------------------------------------

(cd "$ROOT" && go build -o "$CACHE/bin/flowgen" ./tools/flowgen && go build -o "$CACHE/bin/bench-e2e" ./bench/e2e &&
	go build -o "$CACHE/bin/kfake" ./tools/kfake)
export FLOWGEN=${FLOWGEN:-$CACHE/bin/flowgen} KFAKE=$CACHE/bin/kfake

{
	echo "date: $(date -u +%FT%TZ)"
	echo "kernel: $(uname -r)  cpus: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "net.core.rmem_default=$(cat /proc/sys/net/core/rmem_default) net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max)"
	want goflow2 && echo "goflow2: $(go version -m "$GOFLOW2" | awk '$1 == "mod" {print $2, $3}')"
	want nfcapd && echo "nfcapd: $("$NFCAPD" -V 2>&1 | head -1)"
	want flowlens && echo "flowlens: $FLOWLENS (CHDB_LIB_PATH=$CHDB_LIB_PATH)"
	true
} | tee "$BENCH_WORKDIR/env.txt"

args=("${targets[@]}")
((quick)) && args+=(--quick)
"$CACHE/bin/bench-e2e" "${args[@]}" &
driver=$!
set +e
wait "$driver"
rc=$?
set -e
driver=
[[ -n $skipped ]] && say "flowlens was SKIPPED: $skipped"
exit "$rc"
