#!/usr/bin/env bash
# Issue 15: a 10M-row Keboola table synced to Parquet by agnes - export job, file detail, the slices
# downloaded over TLS from the local fake's "S3" (SigV4-signed, in parallel) and read by DuckDB with the
# table's Storage types - next to DuckDB's own read_csv of the same gzip slices from disk, in one run.
#
#   bench/keboola_sync.sh      needs: /usr/bin/python3, openssl, curl; `make unit-build`
#   ROWS=1000000 SLICES=4 bench/keboola_sync.sh     a smaller run
# Prints numbers and the ratio (target >= 0.8); never fails a build (targets are reported, not asserted).
#
# Measured 2026-11-30, 10M rows in 8 slices (169 MB gzip), best of 3, 2 shared cores at load average ~7:
#   agnes sync 36900 ms (271k rows/s), DuckDB read_csv from disk 32954 ms (303k rows/s), ratio 0.89.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agnes="${AGNES_BIN:-$root/build/agnes}"
tools="$root/build/tests"
rows="${ROWS:-10000000}"
slices="${SLICES:-8}"
runs="${RUNS:-3}"
[ -x "$tools/duckdb_exec" ] || { echo "bench: $tools/duckdb_exec is missing; run make unit-build" >&2; exit 2; }

work="$(mktemp -d)"
port=18562
# Under set -e a `wait` on a child that died of our SIGTERM (status 143) would end the trap early and leave
# the fake running and the slices in /tmp: every step here is allowed to fail, the script's status is kept.
cleanup() {
  local status=$?
  set +e
  [ -n "${agnes_pid:-}" ] && { kill "$agnes_pid" 2>/dev/null; wait "$agnes_pid" 2>/dev/null; }
  [ -n "${fake_pid:-}" ] && { kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; }
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
now() { date +%s.%N; }

# The table as Storage would export it: header-less, every value quoted, gzip, in slices.
columns="{'id': 'BIGINT', 'name': 'VARCHAR', 'amount': 'DECIMAL(12,2)', 'at': 'TIMESTAMP', 'paid': 'BOOLEAN'}"
mkdir -p "$work/slices"
per=$(( (rows + slices - 1) / slices ))
files=()
for ((i = 0; i < slices; i++)); do
  f="$work/slices/export.csv_0_0_$i.csv.gz"
  files+=("$f")
  "$tools/duckdb_exec" :memory: "COPY (SELECT range AS id, 'customer ' || (range % 100003) || ' ' || md5(range::VARCHAR)[1:8] AS name,
      CAST((range % 100000) / 100.0 AS DECIMAL(12,2)) AS amount, TIMESTAMP '2024-01-01' + to_seconds(range) AS at,
      range % 3 = 0 AS paid FROM range($((i * per)), $(( (i + 1) * per < rows ? (i + 1) * per : rows ))))
      TO '$f' (FORMAT csv, HEADER false, FORCE_QUOTE *, COMPRESSION gzip)" >/dev/null
done
bytes=$(du -cb "${files[@]}" | tail -1 | cut -f1)

list=$(printf "\"%s\"," "${files[@]}"); list="[${list%,}]"
cat >"$work/fake.json" <<EOF
{"workdir": "$work/fake", "port_file": "$work/fake.port", "provider": "aws",
 "tables": [{"id": "in.c-bench.events", "columns": ["id", "name", "amount", "at", "paid"], "rows": $rows,
   "types": {"id": "INTEGER", "amount": "NUMERIC", "at": "TIMESTAMP", "paid": "BOOLEAN"},
   "lengths": {"amount": "12,2"}, "slice_files": $list}]}
EOF
/usr/bin/python3 "$root/tests/fakes/keboola_storage.py" "$work/fake.json" >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 200); do [ -f "$work/fake.port" ] && break; sleep 0.05; done
[ -f "$work/fake.port" ] || { echo "bench: the fake did not start: $(cat "$work/fake.log")" >&2; exit 1; }
read_field() { /usr/bin/python3 -c "import json,sys; print(json.load(open('$work/fake.port'))['$1'])"; }

DATA_DIR="$work/data" AGNES_LISTEN="127.0.0.1:$port" AGNES_MIN_FREE_BYTES=1 LOG_LEVEL=warn AGNES_SCHEDULER=off \
  SEED_ADMIN_EMAIL=bench@example.com SEED_ADMIN_PASSWORD=bench-password-123 \
  KEBOOLA_STACK_URL="$(read_field url)" KEBOOLA_STORAGE_TOKEN="$(read_field token)" \
  AGNES_CA_BUNDLE="$(read_field ca)" AGNES_CONNECT_TO="$(read_field connect_to)" AGNES_ALLOW_PRIVATE_SOURCES=1 \
  "$agnes" serve >"$work/agnes.log" 2>&1 &
agnes_pid=$!
until curl -sf "http://127.0.0.1:$port/api/health" -o /dev/null; do sleep 0.02; done
token=$(curl -sf "http://127.0.0.1:$port/auth/token" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
api() { curl -sf "http://127.0.0.1:$port$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "${@:2}"; }
api /api/admin/register-table -d '{"name":"events","source_type":"keboola","bucket":"in.c-bench","source_table":"events"}' >/dev/null

best_agnes=""
for ((r = 0; r < runs; r++)); do
  run_id=$(api /api/sync/trigger -X POST | sed 's/.*"run_id":"\([^"]*\)".*/\1/')
  while api "/api/sync/status/$run_id" | grep -q '"state":"running"'; do sleep 0.05; done
  status=$(api "/api/sync/status/$run_id")
  echo "$status" | grep -q '"state":"done"' || { echo "bench: the sync failed: $status" >&2; exit 1; }
  echo "$status" | grep -q "\"rows\":$rows" || { echo "bench: wrong row count: $status" >&2; exit 1; }
  ms=$(echo "$status" | sed 's/.*"duration_ms":\([0-9.]*\).*/\1/')
  best_agnes=$(echo "$ms ${best_agnes:-$ms}" | awk '{print ($1 < $2) ? $1 : $2}')
done

# Baseline: DuckDB alone reading the same slices from disk, same types and dialect, to Parquet.
best_duck=""
for ((r = 0; r < runs; r++)); do
  s=$(now)
  "$tools/duckdb_exec" :memory: "COPY (SELECT * FROM read_csv($(printf "'%s'," "${files[@]}" | sed 's/,$//; s/^/[/; s/$/]/'),
     header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"', columns = $columns))
     TO '$work/baseline.parquet' (FORMAT parquet, COMPRESSION zstd)" >/dev/null
  e=$(now)
  ms=$(echo "$s $e" | awk '{printf "%.1f", ($2 - $1) * 1000}')
  best_duck=$(echo "$ms ${best_duck:-$ms}" | awk '{print ($1 < $2) ? $1 : $2}')
done

awk -v rows="$rows" -v slices="$slices" -v bytes="$bytes" -v a="$best_agnes" -v d="$best_duck" -v runs="$runs" 'BEGIN {
  printf "Keboola -> Parquet, %d rows in %d gzip slices (%.0f MB), best of %d\n", rows, slices, bytes / 1e6, runs
  printf "  agnes sync (export job, SigV4 slices over TLS, DuckDB):  %8.0f ms  %10.0f rows/s\n", a, rows / a * 1000
  printf "  DuckDB read_csv of the same slices from disk:            %8.0f ms  %10.0f rows/s\n", d, rows / d * 1000
  printf "  ratio DuckDB / agnes (speed of agnes relative to DuckDB alone): %.2f  (target >= 0.8)\n", d / a
}'
