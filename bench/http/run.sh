#!/usr/bin/env bash
# HTTP benchmark: wrk against release builds of the plain-axum ceiling and of `switchyard
# serve` (OFREP single flag, OFREP bulk over the 20 flags of bench/http/flags.yaml), in one run
# on one machine. Needs wrk (Debian package `wrk`). Usage: bench/http/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-15}
conns=64
threads=2
cargo build --release -q -p switchyard
cargo build --release -q -p switchyard-server --example http_ceiling
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/http_ceiling 127.0.0.1:18090 > "$work/ceiling.out" &
SWITCHYARD_ADMIN_TOKEN=bench-admin-token-0123456789 SWITCHYARD_SEED_EXAMPLES=false SWITCHYARD_LOG=warn \
  ./target/release/switchyard serve --listen 127.0.0.1:18091 --db "sqlite://$work/db.sqlite" \
  --import bench/http/flags.yaml > "$work/server.out" &
for _ in $(seq 50); do
  grep -q listening "$work/server.out" 2>/dev/null && grep -q listening "$work/ceiling.out" 2>/dev/null && break
  sleep 0.2
done
SDK_KEY=$(curl -s -X POST http://127.0.0.1:18091/api/v1/tokens \
  -H "Authorization: Bearer bench-admin-token-0123456789" \
  -d '{"name":"bench","role":"sdk","environment":"production"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export SDK_KEY

run() {
  echo "== $1"
  wrk -t$threads -c$conns -d${secs}s --latency -s "$3" "$2" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
}
run "ceiling: plain axum handler, constant body" http://127.0.0.1:18090/ofrep/v1/evaluate/flags/checkout-redesign bench/http/single.lua
run "OFREP single flag (5-condition rule)" http://127.0.0.1:18091/ofrep/v1/evaluate/flags/checkout-redesign bench/http/single.lua
run "OFREP bulk (20 flags)" http://127.0.0.1:18091/ofrep/v1/evaluate/flags bench/http/bulk.lua
