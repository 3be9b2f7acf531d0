/*
 * outbound.h - how connectors reach the outside world over HTTPS (libcurl).
 *
 * One policy for every request a built-in connector makes, so no request
 * can forget a rule:
 *
 *   - https only, certificates verified; a private CA (a test's, or a
 *     corporate TLS-inspecting proxy's) is trusted by naming its PEM file
 *     in network.ca_bundle (AGNES_CA_BUNDLE), *in addition* to the system
 *     store;
 *   - the SSRF guard at connect time: every socket a request opens is
 *     checked against net_guard_address_is_private(), so a name that
 *     resolves (or re-resolves, DNS rebinding) to loopback, a LAN or the
 *     cloud metadata service is refused, and so is a URL a remote answer
 *     hands back (a Keboola manifest entry).  AGNES_ALLOW_PRIVATE_SOURCES=1
 *     lifts it (LANs, tests).  When an https proxy is configured in the
 *     environment the proxy is the operator's choice and sockets go only to
 *     it, so the socket rule is not applied (host names are still checked
 *     when a source is configured);
 *   - network.connect_to (AGNES_CONNECT_TO), curl's --connect-to: send the
 *     connections for HOST:PORT to another address while TLS still checks
 *     HOST's certificate (split-horizon DNS, private endpoints, and the
 *     tests' local fakes of cloud storage);
 *   - no redirects (a signed URL that redirects is an error, not a hop).
 *
 * The outbound object is built once per sync or request and shared by the
 * handles it configures; it must outlive them.
 */
#ifndef AGNES_CORE_OUTBOUND_H
#define AGNES_CORE_OUTBOUND_H

#include <curl/curl.h>
#include <stdbool.h>

#include "core/config.h"
#include "core/error.h"

#define OUTBOUND_CONNECT_TO_MAX 2048

typedef struct outbound_policy {
    char ca_bundle[AGNES_PATH_MAX];           /* "" = the system store only */
    char connect_to[OUTBOUND_CONNECT_TO_MAX]; /* "HOST:PORT:TO_HOST:TO_PORT,..." or "" */
    bool allow_private;                       /* AGNES_ALLOW_PRIVATE_SOURCES */
} outbound_policy;

typedef struct outbound {
    outbound_policy policy;
    struct curl_slist *connect_to; /* parsed policy.connect_to */
    bool socket_guard;             /* false when a proxy is configured or private addresses are allowed */
} outbound;

/* What one request saw, for its error sentence. */
typedef struct outbound_request {
    const outbound *net;
    char blocked[64]; /* the private address a connect was refused to, or "" */
} outbound_request;

/* The policy from the merged configuration. */
void outbound_policy_from_config(const agnes_config *config, outbound_policy *out);

/* Build from a policy.  AGNES_ERR_CONFIG when the CA bundle is not a
 * readable file or connect_to is malformed (the message names the
 * setting). */
int outbound_init(outbound *net, const outbound_policy *policy, agnes_error *err);
void outbound_free(outbound *net);

/* Apply the policy to an easy handle: https only, verification, CA file,
 * connect-to, the socket guard (reporting into *request, which must
 * outlive the transfer), no redirects, no signals, a User-Agent. */
void outbound_apply(const outbound *net, CURL *curl, outbound_request *request);

/* A sentence for a failed transfer: curl's own words, plus the fix when the
 * socket guard refused the address or certificate verification failed. */
void outbound_describe_failure(const outbound_request *request, CURLcode code, const char *curl_message, char *out,
                               size_t out_size);

#endif
