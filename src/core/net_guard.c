#include "core/net_guard.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool ipv4_is_private(uint32_t host_order)
{
    static const struct {
        uint32_t network;
        int prefix;
    } ranges[] = {
        {0x00000000, 8},  /* "this" network */
        {0x0A000000, 8},  /* RFC 1918 */
        {0x64400000, 10}, /* CGNAT */
        {0x7F000000, 8},  /* loopback */
        {0xA9FE0000, 16}, /* link-local, cloud metadata */
        {0xAC100000, 12}, /* RFC 1918 */
        {0xC0000000, 24}, /* IETF protocol assignments */
        {0xC0000200, 24}, /* documentation */
        {0xC0A80000, 16}, /* RFC 1918 */
        {0xC6120000, 15}, /* benchmarking */
        {0xC6336400, 24}, /* documentation */
        {0xCB007100, 24}, /* documentation */
        {0xE0000000, 4},  /* multicast */
        {0xF0000000, 4},  /* reserved, broadcast */
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        uint32_t mask = ranges[i].prefix == 0 ? 0 : 0xFFFFFFFFu << (32 - ranges[i].prefix);
        if ((host_order & mask) == ranges[i].network)
            return true;
    }
    return false;
}

bool net_guard_address_is_private(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET)
        return ipv4_is_private(ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr));
    if (address->sa_family != AF_INET6)
        return true; /* nothing else is a source we would connect to */
    const struct in6_addr *a = &((const struct sockaddr_in6 *)address)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4;
        memcpy(&v4, &a->s6_addr[12], 4);
        return ipv4_is_private(ntohl(v4));
    }
    return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
           IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xFE) == 0xFC /* ULA */ ||
           (a->s6_addr[0] == 0x20 && a->s6_addr[1] == 0x01 && a->s6_addr[2] == 0x0D && a->s6_addr[3] == 0xB8);
}

int net_guard_check_host(const char *host, agnes_error *err)
{
    if (host == NULL || host[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_INVALID, "no host name given");
    if (strcasecmp(host, "localhost") == 0 || (strlen(host) > 10 && strcasecmp(host + strlen(host) - 10, ".localhost") == 0))
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "'%s' points at this machine; sources must be on a public network "
                               "(set AGNES_ALLOW_PRIVATE_SOURCES=1 to allow private and loopback addresses)",
                               host);
    if (host[0] == '/')
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "'%s' is a local socket directory; sources must be on a public network "
                               "(set AGNES_ALLOW_PRIVATE_SOURCES=1 to allow it)",
                               host);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &found);
    if (rc != 0)
        return agnes_error_set(err, AGNES_ERR_NETWORK, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    int result = AGNES_OK;
    for (struct addrinfo *at = found; at != NULL && result == AGNES_OK; at = at->ai_next) {
        if (net_guard_address_is_private(at->ai_addr)) {
            char text[INET6_ADDRSTRLEN] = "?";
            const void *raw = at->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)at->ai_addr)->sin_addr
                                                       : (const void *)&((struct sockaddr_in6 *)at->ai_addr)->sin6_addr;
            inet_ntop(at->ai_family, raw, text, sizeof text);
            result = agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                     "'%s' resolves to %s, a private or reserved address; sources must be on a "
                                     "public network (set AGNES_ALLOW_PRIVATE_SOURCES=1 to allow private and "
                                     "loopback addresses)",
                                     host, text);
        }
    }
    freeaddrinfo(found);
    return result;
}

bool net_guard_is_loopback_text(const char *text)
{
    char copy[128];
    if (text == NULL)
        return false;
    size_t len = strlen(text);
    if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof copy)
        return false;
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (strcasecmp(copy, "localhost") == 0)
        return true;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, copy, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, copy, &v6) != 1)
        return false;
    if (IN6_IS_ADDR_V4MAPPED(&v6))
        return v6.s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(&v6);
}

bool net_guard_listen_is_loopback(const char *listen)
{
    char host[128];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
        return false;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    return net_guard_is_loopback_text(host);
}
