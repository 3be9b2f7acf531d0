#!/usr/bin/env bash
# Upgrade (or roll back) the Agnes containers on a Docker host; safe to run from cron or a timer.
#
#   scripts/ops/agnes-auto-upgrade.sh              pull the pinned tag, recreate only if something changed
#   scripts/ops/agnes-auto-upgrade.sh --rollback   run the image that ran before the last upgrade
#
# AGNES_HOME (default /opt/agnes) holds .env, the compose files and the Caddyfile (extracted from the
# image's /opt/agnes-host). Keys read from .env, one at a time and never by sourcing it:
#   AGNES_TAG (stable)  AGNES_IMAGE (ghcr.io/agnes-data/agnes)  AGNES_LAYOUT (volume|host-mount|flat-mount)
#   AGNES_TLS (0|1)  AGNES_STATE_HOST_DIR  AGNES_STATE_MOUNT  SCHEDULER_API_TOKEN  AGNES_URL
# Decisions, one log line each: another run holds the lock -> skip; the state disk is not mounted
# (after retries) -> stop, exit 1; a sync is running -> defer; image digest and config hash unchanged
# -> nothing to do; else the running image is kept as :previous and the stack is recreated.
set -euo pipefail

home="${AGNES_HOME:-/opt/agnes}"
compose="${DOCKER_COMPOSE:-docker compose}"
retries="${AGNES_UPGRADE_RETRIES:-3}"
retry_seconds="${AGNES_UPGRADE_RETRY_SECONDS:-10}"
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

exec 9>"$home/.auto-upgrade.lock"
if ! flock -n 9; then log "another upgrade is running; skipped"; exit 0; fi

tag="$(env_get AGNES_TAG stable)"
image="$(env_get AGNES_IMAGE ghcr.io/agnes-data/agnes)"
layout="$(env_get AGNES_LAYOUT volume)"
tls="$(env_get AGNES_TLS 0)"
url="$(env_get AGNES_URL http://127.0.0.1:8000)"
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
if sync_running; then
  log "a sync is running; upgrade deferred to the next run"
  exit 0
fi
# An overlay that does not parse would stop every later upgrade: check before touching anything.
if ! config_errors="$($compose --env-file "$home/.env" "${files[@]}" config -q 2>&1)"; then
  log "the compose files do not parse; nothing changed: ${config_errors//$'\n'/ }"
  exit 1
fi

running_id() { # the image id of the running app container, or nothing
  local c
  c="$($compose "${files[@]}" ps -q app 2>/dev/null || true)"
  if [ -n "$c" ]; then docker inspect --format '{{.Image}}' "$c" 2>/dev/null || true; fi
}

if [ $rollback = 1 ]; then
  previous="$(state_get previous_image)"
  [ -n "$previous" ] || { log "no previous image recorded; nothing to roll back to"; exit 1; }
  docker tag "$previous" "$image:rollback"
  AGNES_TAG=rollback $compose --env-file "$home/.env" "${files[@]}" up -d --remove-orphans
  log "rolled back to $previous (tagged $image:rollback); pin AGNES_TAG in .env to stay there"
  exit 0
fi

$compose --env-file "$home/.env" "${files[@]}" pull -q app
new_id="$(docker image inspect --format '{{.Id}}' "$image:$tag")"
old_id="$(running_id)"
config_hash="$(cat "$home"/docker-compose*.yml "$home/Caddyfile" 2>/dev/null | { cat; printf '%s\n' "${files[@]}" "$tag" "$layout" "$tls"; } |
  sha256sum | cut -d' ' -f1)"
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
$compose --env-file "$home/.env" "${files[@]}" up -d --remove-orphans
state_set config_hash "$config_hash"
docker image prune -f >/dev/null 2>&1 || true   # untagged layers only; :previous stays for --rollback
log "recreated with $image:$tag ($new_id; was ${old_id:-not running}; layout $layout, tls $tls); roll back with --rollback"
