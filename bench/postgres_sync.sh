#!/usr/bin/env bash
# Issue 5: rows/s of a 1M-row PostgreSQL table synced to Parquet by agnes (COPY TO STDOUT streamed through
# a FIFO into DuckDB), next to DuckDB's own COPY of the same rows from a CSV file on disk, in one run.
#
#   bench/postgres_sync.sh     needs: PostgreSQL 15 server binaries, psql, curl; `make unit-build`
# Prints numbers; never fails a build (targets are reported, not asserted).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agnes="${AGNES_BIN:-$root/build/agnes}"
tools="$root/build/tests"
rows="${ROWS:-1000000}"
bindir="$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
[ -x "$bindir/initdb" ] || { echo "bench: PostgreSQL server binaries missing (scripts/bootstrap installs them)" >&2; exit 2; }
[ -x "$tools/duckdb_exec" ] || { echo "bench: $tools/duckdb_exec is missing; run make unit-build" >&2; exit 2; }

work="$(mktemp -d)"
pg_port=18551
port=18552
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as_pg=(runuser -u postgres --); fi
cleanup() {
  [ -n "${agnes_pid:-}" ] && kill "$agnes_pid" 2>/dev/null && wait "$agnes_pid" 2>/dev/null
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

"${as_pg[@]}" "$bindir/initdb" -D "$work/pg" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
psql_() { psql -X -q -A -t -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"; }
psql_ -c "CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload, now() - g * interval '1 second' AS at,
          (g % 1000)::numeric(10,2) AS amount FROM generate_series(1, $rows) g;"
psql_ -c "VACUUM ANALYZE events"

mkdir -p "$work/state"
echo "POSTGRES_DSN=\"host=127.0.0.1 port=$pg_port dbname=postgres user=postgres\"" > "$work/state/.env_overlay"
DATA_DIR="$work/data" STATE_DIR="$work/state" AGNES_LISTEN="127.0.0.1:$port" AGNES_MIN_FREE_BYTES=1 \
  LOG_LEVEL=warn AGNES_SCHEDULER=off SEED_ADMIN_EMAIL=bench@example.com SEED_ADMIN_PASSWORD=bench-password-123 \
  "$agnes" serve >"$work/agnes.log" 2>&1 &
agnes_pid=$!
until curl -sf "http://127.0.0.1:$port/api/health" -o /dev/null; do sleep 0.02; done
token=$(curl -sf "http://127.0.0.1:$port/auth/token" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
api() { curl -sf "http://127.0.0.1:$port$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "${@:2}"; }
api /api/admin/register-table -d '{"name":"events","source_type":"postgres","bucket":"public","source_table":"events"}' >/dev/null

best_agnes=""
for _ in 1 2 3; do
  run_id=$(api /api/sync/trigger -X POST | sed 's/.*"run_id":"\([^"]*\)".*/\1/')
  while api "/api/sync/status/$run_id" | grep -q '"state":"running"'; do sleep 0.05; done
  ms=$(api "/api/sync/status/$run_id" | sed 's/.*"duration_ms":\([0-9.]*\).*/\1/')
  best_agnes=$(echo "$ms ${best_agnes:-$ms}" | awk '{print ($1 < $2) ? $1 : $2}')
done

# Baseline: the same rows as CSV on disk (psql's COPY), then DuckDB's own COPY of that CSV to Parquet.
t0=$(now)
psql_ -c "\\copy (SELECT id, payload, at, amount FROM events) TO '$work/events.csv' (FORMAT csv)"
t1=$(now)
best_duck=""
for _ in 1 2 3; do
  s=$(now)
  "$tools/duckdb_exec" :memory: "COPY (SELECT * FROM read_csv('$work/events.csv', header = false,
     columns = {'id': 'INTEGER', 'payload': 'VARCHAR', 'at': 'TIMESTAMPTZ', 'amount': 'DECIMAL(10,2)'}))
     TO '$work/baseline.parquet' (FORMAT parquet, COMPRESSION zstd)" >/dev/null
  e=$(now)
  ms=$(echo "$s $e" | awk '{printf "%.1f", ($2 - $1) * 1000}')
  best_duck=$(echo "$ms ${best_duck:-$ms}" | awk '{print ($1 < $2) ? $1 : $2}')
done
export_ms=$(echo "$t0 $t1" | awk '{printf "%.1f", ($2 - $1) * 1000}')

awk -v rows="$rows" -v a="$best_agnes" -v d="$best_duck" -v x="$export_ms" 'BEGIN {
  printf "PostgreSQL -> Parquet, %d rows (best of 3)\n", rows
  printf "  agnes sync (COPY TO STDOUT -> FIFO -> DuckDB):  %8.0f ms  %10.0f rows/s\n", a, rows / a * 1000
  printf "  DuckDB COPY of the same rows from CSV on disk:  %8.0f ms  %10.0f rows/s\n", d, rows / d * 1000
  printf "  (psql \\copy to that CSV first took:            %8.0f ms)\n", x
  printf "  ratio agnes / DuckDB-from-CSV: %.2f; agnes / (psql export + DuckDB): %.2f\n", a / d, a / (x + d)
}'
