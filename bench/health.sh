#!/usr/bin/env bash
# SPEC §16 targets for the foundation, measured as ratios within one run:
#   - GET /api/health requests/s vs nginx serving a static file of the same size
#     (same wrk, same keep-alive, same machine): target >= 0.8
#   - cold start to healthy (target < 200 ms) and idle RSS of `agnes serve` (target < 60 MB)
#
#   bench/health.sh [seconds-per-run]      needs: wrk, nginx (apt-get install wrk nginx-light)
# Prints numbers; never fails a build (targets are reported, not asserted).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${1:-10}"
agnes="${AGNES_BIN:-$root/build/agnes}"
for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk nginx-light curl)" >&2; exit 2; }
done
[ -x "$agnes" ] || { echo "bench: $agnes is missing; run make first" >&2; exit 2; }

work="$(mktemp -d)"
agnes_port=18431 nginx_port=18432
cleanup() {
  [ -n "${agnes_pid:-}" ] && kill "$agnes_pid" 2>/dev/null && wait "$agnes_pid" 2>/dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- cold start ---------------------------------------------------------------
# Start agnes and print how long it took until /api/health answered.
start_agnes() {
  local label="$1" start_ns ready_ns
  start_ns=$(date +%s%N)
  DATA_DIR="$work/data" AGNES_LISTEN="127.0.0.1:$agnes_port" AGNES_MIN_FREE_BYTES=1 AGNES_THREADS=2 \
    "$agnes" serve >"$work/agnes.log" 2>&1 &
  agnes_pid=$!
  until curl -sf "http://127.0.0.1:$agnes_port/api/health" -o "$work/health.json"; do sleep 0.002; done
  ready_ns=$(date +%s%N)
  printf '%-62s %d ms\n' "cold start ($label) to healthy:" $(( (ready_ns - start_ns) / 1000000 ))
}
start_agnes "first run: creates secrets and system.duckdb"
kill "$agnes_pid"; wait "$agnes_pid" || true
start_agnes "existing state; target < 200"
sleep 1
echo "idle RSS of agnes serve:                                       $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$agnes_pid/status)   (target < 60)"

# --- nginx with a static file of the same size ----------------------------------
mkdir -p "$work/www"
cp "$work/health.json" "$work/www/health.json"
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.3

rate() { wrk -t2 -c64 -d"${duration}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
size=$(stat -c %s "$work/health.json")
echo "body size: $size bytes; wrk -t2 -c64 -d${duration}s, keep-alive"
nginx_rate=$(rate "http://127.0.0.1:$nginx_port/health.json")
agnes_rate=$(rate "http://127.0.0.1:$agnes_port/api/health")
echo "nginx static file:  $nginx_rate req/s"
echo "agnes /api/health:  $agnes_rate req/s"
awk -v a="$agnes_rate" -v n="$nginx_rate" 'BEGIN { printf "ratio agnes/nginx:  %.2f   (target >= 0.80)\n", a / n }'
