/*
 * net_guard.h - refuse outbound connections to private networks (SSRF).
 *
 * An admin-supplied source URL or host is resolved and every address it
 * resolves to is checked: a name that resolves to the metadata service,
 * loopback or a LAN address would let a configure request probe the
 * server's own network.  AGNES_ALLOW_PRIVATE_SOURCES=1 lifts the rule for
 * LAN deployments and tests.
 */
#ifndef AGNES_CORE_NET_GUARD_H
#define AGNES_CORE_NET_GUARD_H

#include <stdbool.h>
#include <sys/socket.h>

#include "core/error.h"

/* True for loopback, private, link-local, CGNAT, multicast, reserved,
 * unspecified and IPv4-mapped forms of those. */
bool net_guard_address_is_private(const struct sockaddr *address);

/* Resolve host; AGNES_OK when it resolves and no address is private.
 * AGNES_ERR_FORBIDDEN names the address; AGNES_ERR_NETWORK when the name
 * does not resolve. */
int net_guard_check_host(const char *host, agnes_error *err);

/* True when text is a loopback address or "localhost": "127.0.0.1",
 * "::1", "[::1]", "::ffff:127.0.0.1".  No name resolution. */
bool net_guard_is_loopback_text(const char *text);

/* True when a listen address ("HOST:PORT", "[::1]:PORT") binds loopback
 * only - a trial instance (make run), reachable from this machine alone. */
bool net_guard_listen_is_loopback(const char *listen);

#endif
