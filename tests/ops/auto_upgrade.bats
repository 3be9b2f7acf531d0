#!/usr/bin/env bats
# scripts/ops/agnes-auto-upgrade.sh in a sandbox: a fake AGNES_HOME and stubbed docker, curl, mountpoint.

setup() {
  root="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  script="$root/scripts/ops/agnes-auto-upgrade.sh"
  sandbox="$(mktemp -d)"
  export AGNES_HOME="$sandbox/home" STUB="$sandbox/stub" AGNES_UPGRADE_RETRY_SECONDS=0 AGNES_UPGRADE_HEALTH_TIMEOUT=5
  mkdir -p "$AGNES_HOME" "$STUB/bin"
  cp "$root"/docker-compose*.yml "$root/Caddyfile" "$AGNES_HOME/"
  printf 'AGNES_TAG=stable-2026.11.8\nAGNES_LAYOUT=volume\nSCHEDULER_API_TOKEN=tok\n' > "$AGNES_HOME/.env"
  echo sha256:new > "$STUB/new_id"
  echo sha256:old > "$STUB/running_id"
  echo c0ffee > "$STUB/container"
  echo '{"tables": [], "runs": []}' > "$STUB/sync_status"
  echo "running healthy 0" > "$STUB/health"
  cat > "$STUB/bin/docker" <<'SH'
#!/bin/sh
echo "docker $*" >> "$STUB/log"
case "$1 $2" in
  "image inspect") cat "$STUB/new_id" ;;
  "inspect --format") case "$3" in *State*) cat "$STUB/health" ;; *) cat "$STUB/running_id" ;; esac ;;
  "tag "*) case "$3" in *:stable-2026.11.8) echo "$2" > "$STUB/tagged" ;; esac ;;
  compose*)
    case "$*" in
      *" ps -q app"*) cat "$STUB/container" 2>/dev/null ;;
      *" pull "*) [ ! -f "$STUB/pull_fails" ] || exit 1; [ ! -f "$STUB/sync_after_pull" ] || cp "$STUB/sync_after_pull" "$STUB/sync_status" ;;
      *" config -q"*) [ ! -f "$STUB/config_broken" ] || { echo "yaml: duplicate key" >&2; exit 1; } ;;
      *" up "*) echo "up" >> "$STUB/up"; cp "$STUB/tagged" "$STUB/running_id" 2>/dev/null || cp "$STUB/new_id" "$STUB/running_id" ;;
    esac ;;
esac
SH
  printf '#!/bin/sh\necho "curl $*" >> "$STUB/log"\ncat "$STUB/sync_status"\n' > "$STUB/bin/curl"
  printf '#!/bin/sh\n[ -f "$STUB/mounted" ]\n' > "$STUB/bin/mountpoint"
  chmod +x "$STUB/bin/"*
  export PATH="$STUB/bin:$PATH"
}

teardown() { rm -rf "$sandbox"; }

@test "a new image is pulled, the running one kept as :previous, the stack recreated" {
  run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"recreated with ghcr.io/agnes-data/agnes:stable-2026.11.8 (sha256:new; was sha256:old"* ]]
  grep -q "docker tag sha256:old ghcr.io/agnes-data/agnes:previous" "$STUB/log"
  grep -q -- "-f $AGNES_HOME/docker-compose.prod.yml" "$STUB/log"
  run grep -q "host-mount\|flat-mount\|tls.yml" "$STUB/log"
  [ "$status" -ne 0 ]
}

@test "nothing changed: no recreate" {
  run "$script"
  rm "$STUB/up"
  run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"up to date"* ]]
  [ ! -f "$STUB/up" ]
}

@test "a changed compose file recreates even with the same image" {
  run "$script"
  rm "$STUB/up"
  echo "# tuned" >> "$AGNES_HOME/docker-compose.yml"
  run "$script"
  [ "$status" -eq 0 ]
  [ -f "$STUB/up" ]
}

@test "a running sync defers the upgrade" {
  echo '{"runs": [{"run_id": "r1", "state": "running"}]}' > "$STUB/sync_status"
  run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"a sync is running; upgrade deferred"* ]]
  run grep -q "pull" "$STUB/log"
  [ "$status" -ne 0 ]
}

@test "layout B without its state disk stops after the retries" {
  echo "AGNES_LAYOUT=flat-mount" >> "$AGNES_HOME/.env"
  run "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"state disk /data-state is not mounted after 3 checks; not upgrading"* ]]
  run grep -q "up -d" "$STUB/log"
  [ "$status" -ne 0 ]
  touch "$STUB/mounted"
  run "$script"
  [ "$status" -eq 0 ]
  grep -q -- "-f $AGNES_HOME/docker-compose.flat-mount.yml" "$STUB/log"
}

@test "layouts and TLS choose the overlays" {
  printf 'AGNES_LAYOUT=host-mount\nAGNES_TLS=1\n' >> "$AGNES_HOME/.env"
  run "$script"
  [ "$status" -eq 0 ]
  grep -q -- "-f $AGNES_HOME/docker-compose.host-mount.yml -f $AGNES_HOME/docker-compose.tls.yml" "$STUB/log"
  echo "AGNES_LAYOUT=sideways" >> "$AGNES_HOME/.env"
  run "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"AGNES_LAYOUT=sideways"* ]]
}

@test "a second run waits for the first, then decides afresh" {
  ( exec 8>"$AGNES_HOME/.auto-upgrade.lock"; flock 8; sleep 2 ) &
  holder=$!
  sleep 0.5
  run "$script"
  # Only the lock holder: a bare `wait` also waits for bats' own BATS_TEST_TIMEOUT watchdog, until it fires.
  wait "$holder"
  [ "$status" -eq 0 ]
  [[ "$output" == *"another upgrade is running; waiting for it"* ]]
  [[ "$output" == *"the other upgrade finished; continuing"* ]]
  [[ "$output" == *"recreated with"* ]]
}

@test "a run that cannot get the lock in time skips" {
  exec 8>"$AGNES_HOME/.auto-upgrade.lock"
  flock 8
  AGNES_UPGRADE_LOCK_WAIT=1 run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"the other upgrade still runs after 1s; skipped"* ]]
  run grep -q pull "$STUB/log"
  [ "$status" -ne 0 ]
}

@test ".env is read, never executed" {
  printf 'AGNES_TAG="$(touch %s/pwned)"\n' "$sandbox" >> "$AGNES_HOME/.env"
  run "$script"
  [ ! -f "$sandbox/pwned" ]
}

@test "rollback runs the image that ran before the upgrade and does not retake the current one" {
  run "$script"
  run "$script" --rollback
  [ "$status" -eq 0 ]
  grep -q "docker tag sha256:old ghcr.io/agnes-data/agnes:stable-2026.11.8" "$STUB/log"
  grep -q "docker tag sha256:new ghcr.io/agnes-data/agnes:failed" "$STUB/log"
  [ "$(cat "$STUB/running_id")" = sha256:old ]
  grep -q "failed_image=sha256:new" "$AGNES_HOME/.auto-upgrade.state"
  rm "$STUB/tagged"
  run "$script"
  [[ "$output" == *"which did not get healthy here; staying on sha256:old"* ]]
}

@test "a new image that does not get healthy is rolled back, and not retried" {
  run "$script"                        # sha256:new runs
  echo sha256:newer > "$STUB/new_id"
  echo "exited none 0" > "$STUB/health" # the newer image's server refuses to start
  run "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"did not get healthy within 5s; rolling back to sha256:new"* ]]
  grep -q "docker tag sha256:newer ghcr.io/agnes-data/agnes:failed" "$STUB/log"
  grep -q "docker tag sha256:new ghcr.io/agnes-data/agnes:stable-2026.11.8" "$STUB/log"
  [ "$(grep -c '^up' "$STUB/up")" -eq 3 ]
  echo "running healthy 0" > "$STUB/health"
  rm "$STUB/tagged"
  run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"is still sha256:newer, which did not get healthy here"* ]]
  [ "$(grep -c '^up' "$STUB/up")" -eq 3 ]
}

@test "a sync that starts during the pull defers the recreate" {
  echo '{"runs": [{"state": "running"}]}' > "$STUB/sync_after_pull"
  run "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"a sync started while pulling; upgrade deferred"* ]]
  [ ! -f "$STUB/up" ]
}

@test "compose files that do not parse stop the upgrade before anything changes" {
  touch "$STUB/config_broken"
  run "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"the compose files do not parse; nothing changed: yaml: duplicate key"* ]]
  run grep -q " pull " "$STUB/log"
  [ "$status" -ne 0 ]
}
