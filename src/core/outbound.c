#include "core/outbound.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/net_guard.h"

void outbound_policy_from_config(const agnes_config *config, outbound_policy *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->ca_bundle, sizeof out->ca_bundle, "%s", config_get_string(config, CFG_OUTBOUND_CA_BUNDLE));
    snprintf(out->connect_to, sizeof out->connect_to, "%s", config_get_string(config, CFG_OUTBOUND_CONNECT_TO));
    out->allow_private = config_get_bool(config, CFG_ALLOW_PRIVATE_SOURCES);
}

static bool proxy_configured(void)
{
    static const char *const names[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *value = getenv(names[i]);
        if (value != NULL && value[0] != '\0')
            return true;
    }
    return false;
}

/* "HOST:PORT:TO_HOST:TO_PORT" has at least three colons (an IPv6 TO_HOST
 * in brackets has more). */
static bool connect_to_entry_ok(const char *entry)
{
    int colons = 0;
    for (const char *p = entry; *p; p++)
        colons += *p == ':';
    return colons >= 3;
}

int outbound_init(outbound *net, const outbound_policy *policy, agnes_error *err)
{
    memset(net, 0, sizeof *net);
    net->policy = *policy;
    net->socket_guard = !policy->allow_private && !proxy_configured();
    if (policy->ca_bundle[0] != '\0' && access(policy->ca_bundle, R_OK) != 0)
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "network.ca_bundle (AGNES_CA_BUNDLE) names %s, which is not a readable file: point it "
                               "at a PEM file of the CA certificates to trust, or unset it",
                               policy->ca_bundle);
    char list[OUTBOUND_CONNECT_TO_MAX];
    snprintf(list, sizeof list, "%s", policy->connect_to);
    char *save = NULL;
    for (char *entry = strtok_r(list, ", \t\n", &save); entry != NULL; entry = strtok_r(NULL, ", \t\n", &save)) {
        if (!connect_to_entry_ok(entry)) {
            outbound_free(net);
            return agnes_error_set(err, AGNES_ERR_CONFIG,
                                   "network.connect_to (AGNES_CONNECT_TO) entry '%s' is not HOST:PORT:TO_HOST:TO_PORT "
                                   "(e.g. storage.googleapis.com:443:10.0.0.5:443); separate entries with commas",
                                   entry);
        }
        struct curl_slist *grown = curl_slist_append(net->connect_to, entry);
        if (grown == NULL) {
            outbound_free(net);
            return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        }
        net->connect_to = grown;
    }
    return AGNES_OK;
}

void outbound_free(outbound *net)
{
    curl_slist_free_all(net->connect_to);
    net->connect_to = NULL;
}

/* The SSRF rule at the moment of connecting: whatever name led here, the
 * address itself must be public. */
static curl_socket_t open_guarded_socket(void *data, curlsocktype purpose, struct curl_sockaddr *address)
{
    outbound_request *request = data;
    (void)purpose;
    if (request->net->socket_guard && net_guard_address_is_private(&address->addr)) {
        const void *raw = address->family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)&address->addr)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)&address->addr)->sin6_addr;
        if (inet_ntop(address->family, raw, request->blocked, sizeof request->blocked) == NULL)
            snprintf(request->blocked, sizeof request->blocked, "a private address");
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
}

void outbound_apply(const outbound *net, CURL *curl, outbound_request *request)
{
    request->net = net;
    request->blocked[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "agnes-connector");
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    if (net->policy.ca_bundle[0] != '\0') {
        /* With OpenSSL both the file and the system directory are searched. */
        curl_easy_setopt(curl, CURLOPT_CAINFO, net->policy.ca_bundle);
        curl_easy_setopt(curl, CURLOPT_CAPATH, "/etc/ssl/certs");
    }
    curl_easy_setopt(curl, CURLOPT_CONNECT_TO, net->connect_to);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_guarded_socket);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, request);
}

void outbound_describe_failure(const outbound_request *request, CURLcode code, const char *curl_message, char *out,
                               size_t out_size)
{
    const char *message = curl_message != NULL && curl_message[0] != '\0' ? curl_message : curl_easy_strerror(code);
    if (request->blocked[0] != '\0')
        snprintf(out, out_size,
                 "refused to connect to %s, a private or loopback address (set AGNES_ALLOW_PRIVATE_SOURCES=1 when "
                 "the source really is on your own network)",
                 request->blocked);
    else if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
             code == CURLE_SSL_CERTPROBLEM)
        snprintf(out, out_size,
                 "%s (the server's TLS certificate is not trusted: if it is signed by a private or corporate CA, "
                 "name that CA's PEM file in AGNES_CA_BUNDLE)",
                 message);
    else if (code == CURLE_UNSUPPORTED_PROTOCOL)
        snprintf(out, out_size, "%s (only https:// URLs are used)", message);
    else
        snprintf(out, out_size, "%s", message);
}
