/*
 * cli_dist.h - the server hands out its own CLI (SPEC §17, issue 17):
 *
 *   GET /cli/install.sh                        a POSIX sh installer with this server's
 *                                              address, version and the tarball's SHA-256
 *   GET /cli/agnes-linux-x86_64.tar.gz         agnes/bin/agnes + agnes/lib/agnes/libduckdb.so
 *   GET /cli/agnes-linux-x86_64.tar.gz.sha256  "<hex>  agnes-linux-x86_64.tar.gz"
 *
 * The tarball is built from the running process itself (/proc/self/exe and
 * the libduckdb.so it loaded), so the analyst gets exactly the version the
 * server speaks.  It is built once per binary into DATA_DIR/cli/ (a file
 * lock makes concurrent first requests wait for one build) and served with
 * sendfile afterwards; a new binary (other inode, size or mtime) builds a
 * new one.  The binary's rpath starts with $ORIGIN/../lib/agnes, so the
 * unpacked tree runs from any prefix.
 */
#ifndef AGNES_HTTP_CLI_DIST_H
#define AGNES_HTTP_CLI_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

/* The address analysts reach this server at, without a trailing slash:
 * https://DOMAIN when DOMAIN is set, else the scheme (X-Forwarded-Proto
 * behind a trusted proxy) and the request's Host.  The result goes into
 * shell scripts and links, so a Host with anything but host/port
 * characters is refused (false). */
bool http_public_url(http_context *ctx, const http_request *req, char *out, size_t size);

void cli_dist_handle_install_script(http_context *ctx, const http_request *req, http_response *resp);
void cli_dist_handle_tarball(http_context *ctx, const http_request *req, http_response *resp);
void cli_dist_handle_checksum(http_context *ctx, const http_request *req, http_response *resp);

#endif
