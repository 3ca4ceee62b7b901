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
source bench/http/common.sh
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

./target/release/examples/http_ceiling 127.0.0.1:18090 > "$work/ceiling.out" &
ceiling_pid=$!
SWITCHYARD_SEED_EXAMPLES=false serve ./target/release/switchyard 18091 "$work/server.log" \
  --import bench/http/flags.yaml
server_pid=$served_pid
for _ in $(seq 50); do grep -q listening "$work/ceiling.out" 2>/dev/null && break; sleep 0.2; done
SDK_KEY=$(sdk_key 18091)
export SDK_KEY

# CPU time (user + system) a process has used, in clock ticks (/proc/PID/stat fields 14, 15).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME URL SCRIPT PID: wrk's figures, and the server's CPU time per request (which depends
# less than requests/s on how wrk and the server share the two cores).
run() {
  echo "== $1"
  local before after out requests rps
  before=$(ticks "$4")
  out=$(wrk -t$threads -c$conns -d${secs}s --latency -s "$3" "$2")
  after=$(ticks "$4")
  echo "$out" | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  python3 -c "print(f'  server CPU: {($after - $before) / $hz * 1e6 / $requests:.1f} µs per request')"
  echo "$rps" > "$work/$5.rps"
}
rss() { awk '/^'"$2"':/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }
echo "server resident memory at rest: $(rss "$server_pid" VmRSS)"
run "ceiling: plain axum handler, constant body" http://127.0.0.1:18090/ofrep/v1/evaluate/flags/checkout-redesign bench/http/single.lua "$ceiling_pid" ceiling
run "OFREP single flag (5-condition rule)" http://127.0.0.1:18091/ofrep/v1/evaluate/flags/checkout-redesign bench/http/single.lua "$server_pid" single
run "OFREP bulk (20 flags)" http://127.0.0.1:18091/ofrep/v1/evaluate/flags bench/http/bulk.lua "$server_pid" bulk
echo "server resident memory: $(rss "$server_pid" VmRSS) now, $(rss "$server_pid" VmHWM) at most"
python3 - "$work" <<'PY'
import sys
d = sys.argv[1]
rps = {k: float(open(f"{d}/{k}.rps").read()) for k in ("ceiling", "single", "bulk")}
print(f"single flag: {100 * rps['single'] / rps['ceiling']:.0f} % of the ceiling; "
      f"bulk: {100 * rps['bulk'] / rps['ceiling']:.0f} % of the ceiling")
PY
