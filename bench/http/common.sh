# Sourced by the HTTP bench scripts: the bench's admin token, starting a server, an SDK key.
# Servers are started from the calling shell (not inside `$(...)`), so `jobs -p` finds them.
ADMIN_TOKEN=bench-admin-token-0123456789

# serve BIN PORT LOG [ARGS...]: starts `BIN serve` on 127.0.0.1:PORT on a fresh SQLite file
# beside LOG and waits until it listens; its pid is left in $served_pid.
serve() {
  local bin=$1 port=$2 log=$3
  shift 3
  SWITCHYARD_ADMIN_TOKEN=$ADMIN_TOKEN SWITCHYARD_LOG=warn \
    "$bin" serve --listen "127.0.0.1:$port" --db "sqlite://$log.sqlite" "$@" > "$log" 2>&1 &
  served_pid=$!
  for _ in $(seq 1200); do grep -q listening "$log" 2>/dev/null && return; sleep 0.1; done
  echo "the server on port $port did not start; its log:" >&2; cat "$log" >&2; return 1
}

# sdk_key PORT: a new SDK key for the production environment.
sdk_key() {
  curl -s -X POST "http://127.0.0.1:$1/api/v1/tokens" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -d '{"name":"bench","role":"sdk","environment":"production"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
