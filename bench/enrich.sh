#!/usr/bin/env bash
# The enrich stage's cost on the collector's loss-free rate: bench/e2e.sh's
# bisection (NetFlow v9, pinned, loopback) run for
#   base    the build at BASE (default: the last commit before the enrich
#           chain, Label only), and
#   enrich  this tree's build with 10,000 host-pool prefixes, GeoIP country
#           and ASN databases of 10,000 networks (destinations are public:
#           flowgen -public-dst) and every detection on,
# both with the same generator, in one run.
#   bench/enrich.sh [BASE]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
base=${1:-51a7646~1}
work=${BENCH_ENRICH_DIR:-$top/.cache/bench/enrich}
rm -rf "$work"; mkdir -p "$work/files"
cd "$top"
go build -o bin/flowlens ./cmd/flowlens
go build -o "$work/flowgen" ./tools/flowgen
git worktree remove --force "$work/base-tree" 2>/dev/null || true
git worktree add --detach "$work/base-tree" "$base" >/dev/null
(cd "$work/base-tree" && go build -o "$work/flowlens-base" ./cmd/flowlens)
git worktree remove --force "$work/base-tree"
FLOWLENS_ENRICH_BENCH_DIR="$work/files" go test -count=1 -run TestWriteBenchFiles ./enrich/ >/dev/null
cat >"$work/flowlens-enrich" <<EOS
#!/bin/sh
export FLOWLENS_POLICY_FILE=$work/files/policy.yaml FLOWLENS_GEOIP_COUNTRY_DATABASE=$work/files/country.mmdb FLOWLENS_GEOIP_ASN_DATABASE=$work/files/asn.mmdb
exec $top/bin/flowlens "\$@"
EOS
printf '#!/bin/sh\nexec %s -public-dst "$@"\n' "$work/flowgen" >"$work/flowgen-public"
# The same build without policy or GeoIP, for bench/cpu.sh and bench/paired.sh.
printf '#!/bin/sh\nexec %s/bin/flowlens "$@"\n' "$top" >"$work/flowlens-plain"
chmod +x "$work/flowlens-enrich" "$work/flowgen-public" "$work/flowlens-plain"
for t in base enrich; do
  echo "== $t"
  FLOWLENS="$work/flowlens-$t" FLOWGEN="$work/flowgen-public" bench/e2e.sh flowlens 2>&1 | tee "$work/$t.txt" | grep -iE 'loss-free|flowlens' | tail -3
done
