#!/usr/bin/env bash
# Smoke test of a running Agnes: the seed's sequence, one PASS/FAIL line per step.
#
#   scripts/smoke-test.sh URL
#
# Steps: health is not unhealthy; a token (SMOKE_TOKEN, or POST /auth/bootstrap on a fresh instance
# with SMOKE_EMAIL / SMOKE_PASSWORD); the catalog lists at least one table; SELECT 1; a sync trigger;
# that run finishes (polled up to SMOKE_SYNC_TIMEOUT seconds, default 300); health again.
# Connection errors are retried (SMOKE_RETRIES, default 3, one second apart). Exit 0 when every step
# passed, 1 otherwise (the failing step is named). Needs only bash, curl, sed and grep.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: scripts/smoke-test.sh URL" >&2; exit 2; }
url="${1%/}"
retries="${SMOKE_RETRIES:-3}"
sync_timeout="${SMOKE_SYNC_TIMEOUT:-300}"
delay="${SMOKE_STEP_DELAY:-0}"   # seconds between steps (tests use it to stop the server mid-way)
token="${SMOKE_TOKEN:-}"
body=""
status=""
failed=0

# request METHOD PATH [JSON]: sets $status and $body; retries connection failures.
request() {
  local method="$1" path="$2" data="${3:-}" attempt out
  local -a args=(-s -X "$method" -o - -w '\n%{http_code}' --max-time 30 "$url$path")
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' -d "$data")
  for ((attempt = 1; attempt <= retries; attempt++)); do
    if out="$(curl "${args[@]}")"; then
      status="${out##*$'\n'}"
      body="${out%$'\n'*}"
      return 0
    fi
    sleep 1
  done
  status="000"
  body="connection failed after $retries attempts"
  return 1
}

field() { # the first "name": "value" or "name": number in $body
  printf '%s' "$body" | grep -o "\"$1\": *\"\?[^\",}]*" | head -1 | sed -E "s/\"$1\": *\"?//"
}

describe() { # the detail for a step: the connection error when there was no answer
  if [ "$status" = 000 ]; then echo "$body"; else echo "$1"; fi
}

step() { # step NAME RESULT(0 ok) DETAIL
  if [ "$2" -eq 0 ]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; failed=1; fi
  [ "$delay" = 0 ] || sleep "$delay"
}

check_health() {
  if request GET /api/health && [ "$status" != 000 ]; then
    local s; s="$(field status)"
    [ "$s" = ok ] || [ "$s" = degraded ]
    step "$1" $? "status $s (HTTP $status)"
  else
    step "$1" 1 "$body"
  fi
}

check_health health
if [ $failed = 0 ] && [ -z "$token" ]; then
  password="${SMOKE_PASSWORD:-smoke-$(date +%s)-$RANDOM$RANDOM}"
  request POST /auth/bootstrap "{\"email\": \"${SMOKE_EMAIL:-smoke@example.com}\", \"password\": \"$password\"}"
  token="$(field access_token)"
  [ "$status" = 200 ] && [ -n "$token" ]
  step token $? "$(describe "$( [ "$status" = 200 ] && echo "bootstrapped ${SMOKE_EMAIL:-smoke@example.com}" \
    || echo "HTTP $status: set SMOKE_TOKEN to an admin token for an instance that has an admin")")"
elif [ $failed = 0 ]; then
  request GET /api/me
  [ "$status" = 200 ]
  step token $? "$(describe "SMOKE_TOKEN is $( [ "$status" = 200 ] && echo "valid" || echo "refused (HTTP $status)")")"
fi
if [ $failed = 0 ]; then
  request GET /api/catalog/tables
  count="$(field count)"
  [ "$status" = 200 ] && [ "${count:-0}" -ge 1 ]
  step catalog $? "$(describe "HTTP $status, ${count:-0} tables")"
fi
if [ $failed = 0 ]; then
  request POST /api/query '{"sql": "SELECT 1 AS one"}'
  [ "$status" = 200 ] && printf '%s' "$body" | grep -q '"rows": *\[\[1\]\]'
  step query $? "$(describe "HTTP $status")"
fi
if [ $failed = 0 ]; then
  request POST /api/sync/trigger
  run_id="$(field run_id)"
  [ "$status" = 200 ] && [ -n "$run_id" ]
  step sync_trigger $? "$(describe "HTTP $status, run ${run_id:-none}")"
fi
if [ $failed = 0 ]; then
  deadline=$((SECONDS + sync_timeout))
  state=running
  while [ "$state" = running ] && [ $SECONDS -lt $deadline ]; do
    request GET "/api/sync/status/$run_id" || break
    state="$(field state)"
    [ "$state" = running ] && sleep 1
  done
  [ "$state" = "done" ] || [ "$state" = partial ]
  step sync_finished $? "$(describe "run $run_id: ${state:-unknown} (HTTP $status)")"
fi
[ $failed = 0 ] && check_health health_after

if [ $failed = 0 ]; then echo "smoke test PASSED against $url"; exit 0; fi
echo "smoke test FAILED against $url"
exit 1
