#!/usr/bin/env bash
# A/B: OFREP single flag on two `switchyard` release builds, alternating rounds of wrk on one
# machine in one run. Usage: bench/http/ab.sh OLD_BINARY NEW_BINARY (build the old one from a
# worktree with CARGO_TARGET_DIR pointing here and copy it aside first). Needs wrk.
# CASE=bulk compares OFREP bulk (the 20 flags) instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${1:?old binary}; new=${2:?new binary}
if [ "${CASE:-single}" = bulk ]; then script=bulk.lua path=flags; else script=single.lua path=flags/checkout-redesign; fi
source bench/http/common.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export SWITCHYARD_SEED_EXAMPLES=false
serve "$old" 18191 "$work/a.log" --import bench/http/flags.yaml
serve "$new" 18192 "$work/b.log" --import bench/http/flags.yaml
KA=$(sdk_key 18191)
KB=$(sdk_key 18192)
for round in 1 2 3 4 5; do
  for side in base new; do
    if [ $side = base ]; then export SDK_KEY=$KA; port=18191; else export SDK_KEY=$KB; port=18192; fi
    r=$(wrk -t2 -c64 -d8s --latency -s bench/http/$script http://127.0.0.1:$port/ofrep/v1/evaluate/$path | grep -E "Requests/sec|99%" | tr -s ' ' | tr '\n' ' ')
    echo "round $round $side: $r"
  done
done
