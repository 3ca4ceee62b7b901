#!/usr/bin/env bash
# Resident memory of `switchyard serve` as a newcomer runs it (SQLite, the example flags
# loaded): at rest once it is listening, then the highest reading while wrk sends OFREP
# single-flag requests on 64 connections, and the high-water mark (VmHWM) after. Needs wrk.
# Usage: bench/http/memory.sh [SECONDS]   (BIN=path/to/switchyard to measure another build;
# FLAGS=N to import N generated flags — the shapes of the engine's 10 000-flag compile bench —
# instead of the examples, for memory per flag)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
bin=${BIN:-./target/release/switchyard}
[ -n "${BIN:-}" ] || cargo build --release -q -p switchyard
source bench/http/common.sh
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

import=()
if [ -n "${FLAGS:-}" ]; then
  cargo run --release -q -p switchyard-engine --example ruleset_memory -- "$FLAGS" --yaml > "$work/flags.yaml"
  import=(--import "$work/flags.yaml")
  export SWITCHYARD_SEED_EXAMPLES=false
fi
serve "$bin" 18092 "$work/server.log" "${import[@]}"
pid=$served_pid
SDK_KEY=$(sdk_key 18092)
export SDK_KEY
sleep 2
kib() { awk '/^'"$2"':/ {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }
echo "at rest: $(mib "$(kib $pid VmRSS)")"
flags=$(curl -s http://127.0.0.1:18092/api/v1/flags -H "Authorization: Bearer $ADMIN_TOKEN" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("flags", d) if isinstance(d, dict) else d))')
echo "flags served: $flags; after listing them all: $(mib "$(kib $pid VmRSS)")"
flag=checkout-redesign
[ -z "${FLAGS:-}" ] || flag=flag-2
wrk -t2 -c64 -d${secs}s -s bench/http/single.lua \
  http://127.0.0.1:18092/ofrep/v1/evaluate/flags/$flag > "$work/wrk.out" &
wrk_pid=$!
peak=0
while kill -0 $wrk_pid 2>/dev/null; do
  now=$(kib $pid VmRSS); [ "$now" -gt "$peak" ] && peak=$now
  sleep 0.25
done
grep -E "Requests/sec|Non-2xx" "$work/wrk.out" | sed 's/^/  wrk: /'
echo "under load (highest reading): $(mib "$peak")"
echo "high-water mark: $(mib "$(kib $pid VmHWM)"); after the load: $(mib "$(kib $pid VmRSS)")"
