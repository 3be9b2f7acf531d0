#!/usr/bin/env bash
# Upgrade (or roll back) the Agnes containers on a Docker host; safe to run from cron or a timer.
#
#   scripts/ops/agnes-auto-upgrade.sh              pull the pinned tag, recreate only if something changed,
#                                                  roll back by itself when the new image does not get healthy
#   scripts/ops/agnes-auto-upgrade.sh --rollback   run the image that ran before the last upgrade again
#
# AGNES_HOME holds .env, the compose files and the Caddyfile (extracted from the image's /opt/agnes-host);
# by default the directory the script sits in (as AGNES_HOME/scripts/ops/), else /opt/agnes. Keys read from .env, one at a time and never by sourcing it:
#   AGNES_TAG (stable)  AGNES_IMAGE (ghcr.io/agnes-data/agnes)  AGNES_LAYOUT (volume|host-mount|flat-mount)
#   AGNES_TLS (0|1)  AGNES_DATA_HOST_DIR  AGNES_STATE_HOST_DIR  AGNES_STATE_MOUNT  SCHEDULER_API_TOKEN
#   AGNES_URL (default http://127.0.0.1:${AGNES_PORT:-8000})
# Environment: DOCKER_COMPOSE (default `docker compose` when the plugin is there, else `docker-compose`),
#   AGNES_UPGRADE_LOCK_WAIT (600: seconds a second run waits for the first), AGNES_UPGRADE_HEALTH_TIMEOUT
#   (300: seconds a new image gets to turn healthy), AGNES_UPGRADE_RETRIES / AGNES_UPGRADE_RETRY_SECONDS
#   (3 / 10: checks of the state disk).
# Decisions, one log line each: another run holds the lock -> wait for it, then decide afresh; the state
# disk is not mounted (after retries) -> stop, exit 1; a sync is running -> defer; image and config
# unchanged -> nothing to do; the pulled image already failed here -> stay on the running one; else the
# running image is kept as :previous, the stack recreated, and if the app does not turn healthy the
# previous image is started again (exit 1) and the failed one is not retried until a newer one appears.
set -euo pipefail

# AGNES_HOME, else the directory this script was extracted into (AGNES_HOME/scripts/ops/), else /opt/agnes.
home="${AGNES_HOME:-}"
if [ -z "$home" ]; then
  home="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." 2>/dev/null && pwd)" || home=""
  [ -n "$home" ] && [ -f "$home/docker-compose.yml" ] || home=/opt/agnes
fi
retries="${AGNES_UPGRADE_RETRIES:-3}"
retry_seconds="${AGNES_UPGRADE_RETRY_SECONDS:-10}"
lock_wait="${AGNES_UPGRADE_LOCK_WAIT:-600}"
health_timeout="${AGNES_UPGRADE_HEALTH_TIMEOUT:-300}"
state_file="$home/.auto-upgrade.state"
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) agnes-auto-upgrade: $*"; }

env_get() { # env_get KEY DEFAULT: the last KEY= line of .env, quotes stripped; never executed
  local line value
  line="$(grep -E "^[[:space:]]*$1=" "$home/.env" 2>/dev/null | tail -n 1 || true)"
  value="${line#*=}"
  value="${value%\"}"; value="${value#\"}"; value="${value%\'}"; value="${value#\'}"
  if [ -n "$line" ]; then printf '%s' "$value"; else printf '%s' "$2"; fi
}
state_get() { grep -E "^$1=" "$state_file" 2>/dev/null | tail -n 1 | cut -d= -f2- || true; }
state_set() {
  local tmp="$state_file.tmp"
  { grep -vE "^$1=" "$state_file" 2>/dev/null || true; echo "$1=$2"; } > "$tmp" && mv "$tmp" "$state_file"
}

rollback=0
case "${1:-}" in
  "") ;;
  --rollback) rollback=1 ;;
  *) echo "usage: agnes-auto-upgrade.sh [--rollback]" >&2; exit 2 ;;
esac
[ -f "$home/docker-compose.yml" ] || { log "no docker-compose.yml in $home (set AGNES_HOME)"; exit 1; }
cd "$home"

# One run at a time. A second one (a timer firing twice, an operator by hand) waits for the first and
# then decides afresh: by then the first has usually done the work and this one finds nothing to do.
exec 9>"$home/.auto-upgrade.lock"
if ! flock -n 9; then
  log "another upgrade is running; waiting for it (up to ${lock_wait}s)"
  if ! flock -w "$lock_wait" 9; then
    log "the other upgrade still runs after ${lock_wait}s; skipped"
    exit 0
  fi
  log "the other upgrade finished; continuing"
fi

if [ -n "${DOCKER_COMPOSE:-}" ]; then
  read -r -a compose <<< "$DOCKER_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  log "neither 'docker compose' nor 'docker-compose' is installed; nothing done"
  exit 1
fi

tag="$(env_get AGNES_TAG stable)"
image="$(env_get AGNES_IMAGE ghcr.io/agnes-data/agnes)"
layout="$(env_get AGNES_LAYOUT volume)"
tls="$(env_get AGNES_TLS 0)"
url="$(env_get AGNES_URL "http://127.0.0.1:$(env_get AGNES_PORT 8000)")"
files=(-f "$home/docker-compose.yml" -f "$home/docker-compose.prod.yml")
state_dir=""
case "$layout" in
  volume) ;;
  host-mount)
    files+=(-f "$home/docker-compose.host-mount.yml")
    [ "$(env_get AGNES_STATE_MOUNT optional)" = required ] && state_dir="$(env_get AGNES_DATA_HOST_DIR /data)/state" ;;
  flat-mount)
    files+=(-f "$home/docker-compose.flat-mount.yml")
    state_dir="$(env_get AGNES_STATE_HOST_DIR /data-state)" ;;
  *) log "AGNES_LAYOUT=$layout in $home/.env is not volume, host-mount or flat-mount; nothing done"; exit 1 ;;
esac
[ "$tls" = 1 ] && files+=(-f "$home/docker-compose.tls.yml")
dc() { "${compose[@]}" --env-file "$home/.env" "${files[@]}" "$@"; }

# The state disk must be mounted before anything starts, or state would go to the data disk.
if [ -n "$state_dir" ]; then
  attempt=1
  until ${MOUNTPOINT:-mountpoint} -q "$state_dir"; do
    if [ "$attempt" -ge "$retries" ]; then
      log "state disk $state_dir is not mounted after $retries checks; not upgrading (mount it, then run again)"
      exit 1
    fi
    log "state disk $state_dir is not mounted yet (check $attempt of $retries); waiting ${retry_seconds}s"
    sleep "$retry_seconds"
    attempt=$((attempt + 1))
  done
fi

token="$(env_get SCHEDULER_API_TOKEN "")"
sync_running() {
  [ -n "$token" ] && curl -fsS --max-time 10 -H "Authorization: Bearer $token" "$url/api/sync/status" 2>/dev/null |
    grep -q '"state": *"running"'
}
# An overlay that does not parse would stop every later upgrade: check before touching anything.
if ! config_errors="$(dc config -q 2>&1)"; then
  log "the compose files do not parse; nothing changed: ${config_errors//$'\n'/ }"
  exit 1
fi

app_container() { dc ps -q app 2>/dev/null | head -n 1 || true; }
running_id() { # the image id of the app container, or nothing
  local c
  c="$(app_container)"
  if [ -n "$c" ]; then docker inspect --format '{{.Image}}' "$c" 2>/dev/null || true; fi
}
last_logs() { dc logs --no-color --tail 5 app 2>/dev/null | tr -s '\n' ' ' | cut -c1-600 || true; }

wait_healthy() { # 0 once the app container reports healthy; 1 when it crashed, is unhealthy or time ran out
  local deadline=$((SECONDS + health_timeout)) c status health restarts
  while [ $SECONDS -lt "$deadline" ]; do
    c="$(app_container)"
    if [ -n "$c" ]; then
      read -r status health restarts < <(docker inspect --format \
        '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$c" \
        2>/dev/null || echo "unknown unknown 0")
      case "$health" in
        healthy) return 0 ;;
        unhealthy) return 1 ;;
        none) [ "$status" = running ] && return 0 ;;
      esac
      # A server that refuses to start exits; restart policy or not, it will not get healthy.
      case "$status" in exited|dead|restarting) return 1 ;; esac
      [ "${restarts:-0}" -gt 0 ] && return 1
    fi
    sleep 2
  done
  return 1
}

if [ $rollback = 1 ]; then
  previous="$(state_get previous_image)"
  [ -n "$previous" ] || { log "no previous image recorded; nothing to roll back to"; exit 1; }
  current="$(running_id)"
  # The pinned tag points at the previous image locally, so `up` (by this script or by hand) runs it;
  # the image rolled away from is not taken again until a newer one is published.
  docker tag "$previous" "$image:$tag"
  if [ -n "$current" ] && [ "$current" != "$previous" ]; then
    docker tag "$current" "$image:failed"
    state_set failed_image "$current"
  fi
  dc up -d --remove-orphans
  if wait_healthy; then
    log "rolled back to $previous (healthy); $current is not taken again until a newer $image:$tag is published"
    exit 0
  fi
  log "rolled back to $previous, but it is not healthy either: $(last_logs)"
  exit 1
fi

if sync_running; then
  log "a sync is running; upgrade deferred to the next run"
  exit 0
fi

dc pull -q app
new_id="$(docker image inspect --format '{{.Id}}' "$image:$tag")"
old_id="$(running_id)"
config_hash="$(cat "$home"/docker-compose*.yml "$home/Caddyfile" 2>/dev/null | { cat; printf '%s\n' "${files[@]}" "$tag" "$layout" "$tls"; } |
  sha256sum | cut -d' ' -f1)"
if [ -n "$old_id" ] && [ "$new_id" != "$old_id" ] && [ "$new_id" = "$(state_get failed_image)" ]; then
  docker tag "$old_id" "$image:$tag" # the pull moved the local tag; keep it on what runs
  log "$image:$tag is still $new_id, which did not get healthy here; staying on $old_id until a newer image is published"
  exit 0
fi
if [ "$new_id" = "$old_id" ] && [ "$config_hash" = "$(state_get config_hash)" ]; then
  log "up to date: $image:$tag ($new_id), configuration unchanged"
  exit 0
fi
# The pull took a while: a sync may have started since the first look.
if sync_running; then
  log "a sync started while pulling; upgrade deferred to the next run (the new image is already pulled)"
  exit 0
fi
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker tag "$old_id" "$image:previous"
  state_set previous_image "$old_id"
fi
dc up -d --remove-orphans
if ! wait_healthy; then
  reason="$(last_logs)"
  if [ "$new_id" != "$old_id" ]; then
    docker tag "$new_id" "$image:failed"
    state_set failed_image "$new_id"
  fi
  if [ -z "$old_id" ] || [ "$new_id" = "$old_id" ]; then
    log "the app did not get healthy within ${health_timeout}s and there is no other image to go back to: $reason"
    exit 1
  fi
  log "$image:$tag ($new_id) did not get healthy within ${health_timeout}s; rolling back to $old_id. Its log: $reason"
  docker tag "$old_id" "$image:$tag"
  dc up -d --remove-orphans
  if wait_healthy; then
    log "rolled back to $old_id (healthy); $new_id is not taken again until a newer $image:$tag is published"
  else
    log "rolled back to $old_id, but it is not healthy either: $(last_logs)"
  fi
  exit 1
fi
state_set config_hash "$config_hash"
# Untagged agnes images only (the ones replaced); :previous stays for --rollback, and nothing else on
# the host (other images, build cache) is touched.
docker image prune -f --filter "label=org.opencontainers.image.title=agnes" >/dev/null 2>&1 || true
log "recreated with $image:$tag ($new_id; was ${old_id:-not running}; layout $layout, tls $tls); healthy; roll back with --rollback"
