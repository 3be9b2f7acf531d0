#!/bin/sh
# Install the Agnes CLI (`agnes`) for the current user, without root.
#
#   curl -fsS @AGNES_SERVER@/cli/install.sh | sh
#
# The Agnes server at @AGNES_SERVER@ served this script; it fills in its own
# address, version and the SHA-256 of its CLI tarball.  The tarball is
# downloaded, checked against that SHA-256, and unpacked into
#
#   ${AGNES_PREFIX:-$HOME/.local}/bin/agnes
#   ${AGNES_PREFIX:-$HOME/.local}/lib/agnes/libduckdb.so
#
# (the binary finds the library relative to itself, so any prefix works).
# Running it again upgrades in place.  Nothing outside the prefix is touched.
set -eu

server='@AGNES_SERVER@'
version='@AGNES_VERSION@'
expected_sha256='@AGNES_SHA256@'
prefix="${AGNES_PREFIX:-${HOME:?HOME is not set; set HOME or AGNES_PREFIX}/.local}"

say() { printf 'agnes install: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

case "$(uname -s 2>/dev/null)/$(uname -m 2>/dev/null)" in
  Linux/x86_64|Linux/amd64) ;;
  *) fail "this server builds the CLI for Linux x86_64 only, and this machine is $(uname -s) $(uname -m); build from source instead (make install PREFIX=\$HOME/.local)" ;;
esac

tmp="$(mktemp -d "${TMPDIR:-/tmp}/agnes-install.XXXXXX")" || fail "cannot create a temporary directory; set TMPDIR to a writable one"
trap 'rm -rf "$tmp"' EXIT INT TERM

url="$server/cli/agnes-linux-x86_64.tar.gz"
say "downloading agnes $version from $url"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp/agnes.tar.gz" "$url" || fail "download failed: $url (is the server reachable from here?)"
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$tmp/agnes.tar.gz" "$url" || fail "download failed: $url (is the server reachable from here?)"
else
  fail "neither curl nor wget is installed; install one of them and run this again"
fi

if command -v sha256sum >/dev/null 2>&1; then
  actual="$(sha256sum "$tmp/agnes.tar.gz" | cut -d' ' -f1)"
elif command -v shasum >/dev/null 2>&1; then
  actual="$(shasum -a 256 "$tmp/agnes.tar.gz" | cut -d' ' -f1)"
else
  fail "cannot verify the download: neither sha256sum nor shasum is installed"
fi
[ "$actual" = "$expected_sha256" ] ||
  fail "the download's SHA-256 is $actual, expected $expected_sha256: it was altered or cut short; nothing was installed. Run this again, and tell the server's admin if it repeats"

tar -xzf "$tmp/agnes.tar.gz" -C "$tmp" || fail "cannot unpack the download; nothing was installed"
[ -x "$tmp/agnes/bin/agnes" ] && [ -f "$tmp/agnes/lib/agnes/libduckdb.so" ] ||
  fail "the download does not contain agnes/bin/agnes and agnes/lib/agnes/libduckdb.so; nothing was installed"

# Libraries the binary needs from the system (Debian/Ubuntu package names); libduckdb.so
# itself must resolve through the relative rpath, from the unpacked tree.
missing="$(ldd "$tmp/agnes/bin/agnes" 2>/dev/null | awk '/not found/ {print $1}')"
if [ -n "$missing" ]; then
  packages=""
  for lib in $missing; do
    case "$lib" in
      libmicrohttpd.so.*) packages="$packages libmicrohttpd12" ;;
      libjansson.so.*) packages="$packages libjansson4" ;;
      libsodium.so.*) packages="$packages libsodium23" ;;
      libyaml-0.so.*) packages="$packages libyaml-0-2" ;;
      libcurl.so.*) packages="$packages libcurl4" ;;
      libjwt.so.*) packages="$packages libjwt0" ;;
      libpq.so.*) packages="$packages libpq5" ;;
      libz.so.*) packages="$packages zlib1g" ;;
      *) packages="$packages ($lib)" ;;
    esac
  done
  fail "this machine lacks libraries agnes needs: $(echo "$missing" | tr '\n' ' ')- install them (Debian/Ubuntu: sudo apt-get install$packages) and run this again; nothing was installed"
fi

mkdir -p "$prefix/bin" "$prefix/lib/agnes" || fail "cannot create $prefix/bin and $prefix/lib/agnes; set AGNES_PREFIX to a directory you can write"
# Temporary name + rename: a running agnes keeps its old file, the new one appears whole.
cp "$tmp/agnes/lib/agnes/libduckdb.so" "$prefix/lib/agnes/.libduckdb.so.new" &&
  mv -f "$prefix/lib/agnes/.libduckdb.so.new" "$prefix/lib/agnes/libduckdb.so" ||
  fail "cannot write $prefix/lib/agnes/libduckdb.so"
cp "$tmp/agnes/bin/agnes" "$prefix/bin/.agnes.new" && chmod 0755 "$prefix/bin/.agnes.new" &&
  mv -f "$prefix/bin/.agnes.new" "$prefix/bin/agnes" || fail "cannot write $prefix/bin/agnes"

installed="$("$prefix/bin/agnes" --version 2>&1)" || fail "$prefix/bin/agnes does not run: $installed"
say "installed $installed"
say "  $prefix/bin/agnes"
case ":${PATH:-}:" in
  *":$prefix/bin:"*) ;;
  *) say "$prefix/bin is not on your PATH: add  export PATH=\"$prefix/bin:\$PATH\"  to your shell profile (or run $prefix/bin/agnes)" ;;
esac
say "next: agnes login --server $server"
