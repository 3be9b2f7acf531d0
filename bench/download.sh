#!/usr/bin/env bash
# Issue 6: throughput of GET /api/data/{table}/download for a ~1 GiB Parquet file (sendfile through
# libmicrohttpd, after the auth and visibility checks) vs nginx serving the same file, both fetched by
# curl over loopback in the same run.  SIZE_MB changes the size.
#
#   bench/download.sh       needs: nginx, curl (apt-get install nginx-light curl); `make unit-build`
# Prints numbers; never fails a build (targets are reported, not asserted).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agnes="${AGNES_BIN:-$root/build/agnes}"
tools="$root/build/tests"
size_mb="${SIZE_MB:-1024}"
for tool in nginx curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install nginx-light curl)" >&2; exit 2; }
done
[ -x "$tools/duckdb_exec" ] || { echo "bench: $tools/duckdb_exec is missing; run make unit-build" >&2; exit 2; }

work="$(mktemp -d)"
agnes_port=18561 nginx_port=18562
cleanup() {
  [ -n "${agnes_pid:-}" ] && kill "$agnes_pid" 2>/dev/null && wait "$agnes_pid" 2>/dev/null
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A Parquet file of about size_mb MiB of incompressible rows, published as table `big` of source `bench`.
src="$work/data/extracts/bench"
mkdir -p "$src/data"
rows=$(( size_mb * 1024 * 1024 / 40 ))
"$tools/duckdb_exec" "$src/extract.duckdb" "
  COPY (SELECT range AS id, md5(range::VARCHAR) AS h FROM range($rows))
    TO '$src/data/big.parquet' (FORMAT parquet, COMPRESSION uncompressed);
  CREATE VIEW big AS SELECT * FROM read_parquet('$src/data/big.parquet');
  CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, size_bytes BIGINT,
                      extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local');
  INSERT INTO _meta VALUES ('big', 'bench', $rows, 0, now()::TIMESTAMP, 'local');" >/dev/null
bytes=$(stat -c %s "$src/data/big.parquet")

DATA_DIR="$work/data" AGNES_LISTEN="127.0.0.1:$agnes_port" AGNES_MIN_FREE_BYTES=1 LOG_LEVEL=warn \
  SEED_ADMIN_EMAIL=bench@example.com SEED_ADMIN_PASSWORD=bench-password-123 "$agnes" serve >"$work/agnes.log" 2>&1 &
agnes_pid=$!
until curl -sf "http://127.0.0.1:$agnes_port/api/health" -o /dev/null; do sleep 0.05; done
token=$(curl -sf "http://127.0.0.1:$agnes_port/auth/token" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
# The first rebuild hashes the file; wait until the manifest lists it.
until curl -sf "http://127.0.0.1:$agnes_port/api/sync/manifest" -H "Authorization: Bearer $token" | grep -q '"big"'; do
  sleep 0.2
done

cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$nginx_port; root $src/data; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"

best() { # best of 3 curl runs of a URL: MB/s
  local url="$1" best=0 speed
  shift
  for _ in 1 2 3; do
    speed=$(curl -sf -o /dev/null -w '%{speed_download}' "$@" "$url")
    best=$(echo "$speed $best" | awk '{print ($1 > $2) ? $1 : $2}')
  done
  echo "$best"
}
agnes_speed=$(best "http://127.0.0.1:$agnes_port/api/data/big/download" -H "Authorization: Bearer $token")
nginx_speed=$(best "http://127.0.0.1:$nginx_port/big.parquet")
awk -v b="$bytes" -v a="$agnes_speed" -v n="$nginx_speed" 'BEGIN {
  printf "download of a %.0f MiB Parquet file over loopback (curl, best of 3)\n", b / 1048576
  printf "  agnes /api/data/big/download:  %8.0f MB/s\n", a / 1e6
  printf "  nginx static file:             %8.0f MB/s\n", n / 1e6
  printf "  ratio agnes / nginx: %.2f (SPEC §16 target >= 0.9)\n", a / n
}'
