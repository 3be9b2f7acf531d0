#!/usr/bin/env bash
# SPEC §16 targets for /api/query, measured as ratios within one run:
#   - a small query through the API vs the same query in-process (duckdb_time): target < 0.3 ms added
#   - a 1M-row aggregation through the API vs in-process: target ratio <= 1.05
#   - a 5M-row result streamed as CSV: the server's RSS stays flat (peak reported)
#
#   bench/query.sh            needs: wrk, curl; `make unit-build` for build/tests/duckdb_{exec,time}
# Prints numbers; never fails a build (targets are reported, not asserted).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
agnes="${AGNES_BIN:-$root/build/agnes}"
tools="$root/build/tests"
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install wrk curl)" >&2; exit 2; }
done
[ -x "$tools/duckdb_time" ] || { echo "bench: $tools/duckdb_time is missing; run make unit-build" >&2; exit 2; }

work="$(mktemp -d)"
port=18441
cleanup() {
  [ -n "${agnes_pid:-}" ] && kill "$agnes_pid" 2>/dev/null && wait "$agnes_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- data: 5M-row `big` and 1M-row `events` in a hand-made extract ------------------
src="$work/data/extracts/bench"
mkdir -p "$src/data"
"$tools/duckdb_exec" "$src/extract.duckdb" "
  COPY (SELECT range AS id, range % 97 AS bucket, 'label ' || range AS label, range * 0.5 AS amount,
        TIMESTAMP '2025-01-01' + to_seconds(range) AS at FROM range(5000000)) TO '$src/data/big.parquet';
  COPY (SELECT range AS id, range % 1000 AS k, hash(range) % 100000 AS v FROM range(1000000))
        TO '$src/data/events.parquet';
  CREATE VIEW big AS SELECT * FROM read_parquet('$src/data/big.parquet');
  CREATE VIEW events AS SELECT * FROM read_parquet('$src/data/events.parquet');
  CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, size_bytes BIGINT,
                      extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local');
  INSERT INTO _meta VALUES ('big', 'bench', 5000000, 0, now()::TIMESTAMP, 'local'),
                           ('events', 'bench', 1000000, 0, now()::TIMESTAMP, 'local');" >/dev/null

DATA_DIR="$work/data" AGNES_LISTEN="127.0.0.1:$port" AGNES_MIN_FREE_BYTES=1 LOG_LEVEL=warn \
  AGNES_QUERY_TIMEOUT=600 SEED_ADMIN_EMAIL=bench@example.com SEED_ADMIN_PASSWORD=bench-password-123 \
  "$agnes" serve >"$work/agnes.log" 2>&1 &
agnes_pid=$!
until curl -sf "http://127.0.0.1:$port/api/health" -o /dev/null; do sleep 0.02; done
TOKEN=$(curl -sf "http://127.0.0.1:$port/auth/token" -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-123"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
export TOKEN
catalog="$work/data/analytics/server.duckdb"
attach="ATTACH '$src/extract.duckdb' AS bench (READ_ONLY);"

# API mean latency of one query over one keep-alive connection (wrk, c1), in ms.
api_mean_ms() {
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"sql": "$1", "limit": 1000}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA
  local rps
  rps=$(wrk -t1 -c1 -d"$2"s -s "$work/post.lua" "http://127.0.0.1:$port/api/query" | awk '/Requests\/sec/ {print $2}')
  awk -v r="$rps" 'BEGIN {printf "%.4f", 1000 / r}'
}

# --- 1. small query: API vs in-process ------------------------------------------------
small="SELECT count(*) FROM events WHERE k = 7"
api_ms=$(api_mean_ms "$small" 5)
inproc_ms=$("$tools/duckdb_time" "$catalog" "$attach $small" 2000)
printf '%-52s %s ms (in-process %s ms) -> adds %s ms   (target < 0.3)\n' "small query via API, mean:" "$api_ms" \
  "$inproc_ms" "$(awk -v a="$api_ms" -v b="$inproc_ms" 'BEGIN {printf "%.3f", a - b}')"

# --- 2. 1M-row aggregation: API vs in-process -----------------------------------------
agg="SELECT k, count(*), sum(v), avg(v) FROM events GROUP BY k ORDER BY k"
api_agg=$(api_mean_ms "$agg" 8)
inproc_agg=$("$tools/duckdb_time" "$catalog" "$attach $agg" 100)
printf '%-52s %s ms (in-process %s ms) -> ratio %s   (target <= 1.05)\n' "1M-row aggregation via API, mean:" \
  "$api_agg" "$inproc_agg" "$(awk -v a="$api_agg" -v b="$inproc_agg" 'BEGIN {printf "%.3f", a / b}')"

# --- 3. 5M rows streamed as CSV: RSS of the server while it streams --------------------
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$agnes_pid/status"; }
before=$(rss_kb)
peak=$before
curl -s -o "$work/big.csv" "http://127.0.0.1:$port/api/query" -H "Authorization: Bearer $TOKEN" \
  -d '{"sql": "SELECT * FROM big", "limit": 5000000, "format": "csv"}' &
curl_pid=$!
started=$(date +%s%N)
while kill -0 "$curl_pid" 2>/dev/null; do
  now=$(rss_kb); [ "$now" -gt "$peak" ] && peak=$now
  sleep 0.02
done
wait "$curl_pid"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
lines=$(wc -l <"$work/big.csv")
bytes=$(stat -c %s "$work/big.csv")
printf '%-52s %d rows, %d MB in %d ms; server RSS %d MB before, peak %d MB\n' "5M-row CSV stream:" \
  $((lines - 1)) $((bytes / 1048576)) "$elapsed_ms" $((before / 1024)) $((peak / 1024))
