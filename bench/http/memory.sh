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
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

import=()
if [ -n "${FLAGS:-}" ]; then
  python3 - "$FLAGS" > "$work/flags.yaml" <<'PY'
import sys
print("flags:")
for i in range(int(sys.argv[1])):
    print(f"  - key: flag-{i}")
    if i % 4 == 1:
        print('    fallthrough: {percentage: 12.5, variant: "on"}')
    elif i % 4 == 2:
        print("    rules:\n      - conditions:\n          - {attribute: plan, operator: in, value: [a, b, c, d]}"
              '\n          - {attribute: v, operator: semver_gte, value: "1.2.0"}\n        variant: "on"')
    elif i % 4 == 3:
        print("    type: string\n    variants: {a: a, b: b, c: c}\n    defaultVariant: a"
              "\n    fallthrough: {split: {a: 50, b: 25, c: 25}}\n    environments:\n      production: {enabled: false}")
PY
  import=(--import "$work/flags.yaml")
  export SWITCHYARD_SEED_EXAMPLES=false
fi
SWITCHYARD_ADMIN_TOKEN=bench-admin-token-0123456789 SWITCHYARD_LOG=warn \
  "$bin" serve --listen 127.0.0.1:18092 --db "sqlite://$work/db.sqlite" "${import[@]}" > "$work/server.out" 2>&1 &
pid=$!
for _ in $(seq 1200); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
SDK_KEY=$(curl -s -X POST http://127.0.0.1:18092/api/v1/tokens \
  -H "Authorization: Bearer bench-admin-token-0123456789" \
  -d '{"name":"bench","role":"sdk","environment":"production"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export SDK_KEY
sleep 2
kib() { awk '/^'"$2"':/ {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }
echo "at rest: $(mib "$(kib $pid VmRSS)")"
flags=$(curl -s http://127.0.0.1:18092/api/v1/flags -H "Authorization: Bearer bench-admin-token-0123456789" \
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
