#!/usr/bin/env bash
# A/B: OFREP single flag on two `switchyard` release builds, alternating rounds of wrk on one
# machine in one run. Usage: bench/http/ab.sh OLD_BINARY NEW_BINARY (build the old one from a
# worktree with CARGO_TARGET_DIR pointing here and copy it aside first). Needs wrk.
# CASE=bulk compares OFREP bulk (the 20 flags) instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${1:?old binary}; new=${2:?new binary}
if [ "${CASE:-single}" = bulk ]; then script=bulk.lua path=flags; else script=single.lua path=flags/checkout-redesign; fi
work=$(mktemp -d)
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
start() { # bin port
  SWITCHYARD_ADMIN_TOKEN=bench-admin-token-0123456789 SWITCHYARD_SEED_EXAMPLES=false SWITCHYARD_LOG=warn \
    "$1" serve --listen 127.0.0.1:$2 --db "sqlite://$work/db$2.sqlite" --import bench/http/flags.yaml > "$work/s$2.out" 2>&1 &
  echo $! >> "$work/pids"  # started inside $(...): not a job of this shell, so kept by pid
  for _ in $(seq 50); do grep -q listening "$work/s$2.out" 2>/dev/null && break; sleep 0.2; done
  curl -s -X POST http://127.0.0.1:$2/api/v1/tokens -H "Authorization: Bearer bench-admin-token-0123456789" \
    -d '{"name":"bench","role":"sdk","environment":"production"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
KA=$(start "$old" 18191)
KB=$(start "$new" 18192)
for round in 1 2 3 4 5; do
  for side in base new; do
    if [ $side = base ]; then export SDK_KEY=$KA; port=18191; else export SDK_KEY=$KB; port=18192; fi
    r=$(wrk -t2 -c64 -d8s --latency -s bench/http/$script http://127.0.0.1:$port/ofrep/v1/evaluate/$path | grep -E "Requests/sec|99%" | tr -s ' ' | tr '\n' ' ')
    echo "round $round $side: $r"
  done
done
kill $(cat "$work/pids") 2>/dev/null || true
rm -rf "$work"
