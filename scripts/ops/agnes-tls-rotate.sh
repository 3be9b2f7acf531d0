#!/usr/bin/env bash
# Install or rotate the TLS certificate Caddy serves (docker-compose.tls.yml), atomically.
#
#   CERT_SOURCE=file:///secure/certs   scripts/ops/agnes-tls-rotate.sh
#   CERT_SOURCE=https://vault.example.com/agnes/   scripts/ops/agnes-tls-rotate.sh
#
# CERT_SOURCE names a directory holding fullchain.pem and privkey.pem. Both are validated (PEM, the
# key matches the certificate, the certificate is not expired) before anything in CERT_DIR changes;
# then each is swapped in with a rename, and Caddy is reloaded only when the certificate changed.
# Without CERT_SOURCE, or when it cannot be read and CERT_DIR holds no certificate yet, a self-signed
# certificate for DOMAIN (30 days) keeps HTTPS up until a real one arrives. One log line per decision.
#
#   CERT_DIR          default: $STATE_DIR/certs (STATE_DIR default /data/state)
#   DOMAIN            the name for a self-signed certificate (default localhost)
#   CADDY_RELOAD_CMD  how to reload Caddy (default: `caddy reload` inside the running container of the
#                     compose service caddy, of project COMPOSE_PROJECT_NAME when that is set)
set -euo pipefail

log() { echo "agnes-tls-rotate: $*" >&2; }
state_dir="${STATE_DIR:-/data/state}"
cert_dir="${CERT_DIR:-$state_dir/certs}"
domain="${DOMAIN:-localhost}"
reload_cmd="${CADDY_RELOAD_CMD:-}"
source_url="${CERT_SOURCE:-}"

mkdir -p "$cert_dir"
work="$(mktemp -d "$cert_dir/.rotate.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fetch() { # fetch NAME -> $work/NAME
  local name="$1"
  case "$source_url" in
    file://*) cp "${source_url#file://}/$name" "$work/$name" ;;
    https://*) curl -fsS --max-time 30 -o "$work/$name" "${source_url%/}/$name" ;;
    *) return 1 ;;
  esac
}

valid() { # the pair in $work is usable: PEM, key matches, not expired
  openssl x509 -noout -in "$work/fullchain.pem" 2>/dev/null || { log "fullchain.pem is not a PEM certificate"; return 1; }
  openssl pkey -noout -in "$work/privkey.pem" 2>/dev/null || { log "privkey.pem is not a PEM private key"; return 1; }
  local cert_key key_key
  cert_key="$(openssl x509 -noout -pubkey -in "$work/fullchain.pem" | openssl sha256)"
  key_key="$(openssl pkey -pubout -in "$work/privkey.pem" | openssl sha256)"
  [ "$cert_key" = "$key_key" ] || { log "privkey.pem does not belong to fullchain.pem"; return 1; }
  openssl x509 -noout -checkend 0 -in "$work/fullchain.pem" >/dev/null || { log "the certificate has expired"; return 1; }
}

self_signed() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" \
    -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
}

if [ -n "$source_url" ] && fetch fullchain.pem && fetch privkey.pem; then
  if ! valid; then
    log "refused the certificate from $source_url; $cert_dir unchanged"
    exit 1
  fi
  origin="$source_url"
elif [ -f "$cert_dir/fullchain.pem" ]; then
  log "no certificate available${source_url:+ from $source_url}; keeping the current one"
  exit 0
else
  log "no certificate available${source_url:+ from $source_url}; generating a self-signed one for $domain (30 days)"
  self_signed
  origin="self-signed"
fi

if [ -f "$cert_dir/fullchain.pem" ] && cmp -s "$work/fullchain.pem" "$cert_dir/fullchain.pem" \
   && cmp -s "$work/privkey.pem" "$cert_dir/privkey.pem"; then
  log "certificate unchanged ($origin); Caddy not reloaded"
  exit 0
fi
chmod 0644 "$work/fullchain.pem"
chmod 0600 "$work/privkey.pem"
# The key first: Caddy reads both only on reload, which comes after both renames.
mv -f "$work/privkey.pem" "$cert_dir/privkey.pem"
mv -f "$work/fullchain.pem" "$cert_dir/fullchain.pem"
sync -f "$cert_dir/fullchain.pem" 2>/dev/null || true
log "installed a new certificate from $origin: $(openssl x509 -noout -subject -enddate -in "$cert_dir/fullchain.pem" | tr '\n' ' ')"
reload_caddy() {
  if [ -n "$reload_cmd" ]; then $reload_cmd; return; fi
  # By the compose labels: works whatever directory, project name or compose version started it.
  local filter=(--filter label=com.docker.compose.service=caddy) container
  [ -n "${COMPOSE_PROJECT_NAME:-}" ] && filter+=(--filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  container="$(docker ps -q "${filter[@]}" | head -n 1)"
  if [ -z "$container" ]; then
    log "no running Caddy container to reload (AGNES_TLS=1 in .env and the stack up?)"
    return 1
  fi
  # --force: the Caddyfile is unchanged, and without it Caddy keeps the certificate it loaded.
  docker exec "$container" caddy reload --force --config /etc/caddy/Caddyfile --adapter caddyfile
}
if reload_caddy >/dev/null; then
  log "Caddy reloaded"
else
  log "the certificate is installed but the Caddy reload failed${reload_cmd:+: $reload_cmd}"
  exit 1
fi
