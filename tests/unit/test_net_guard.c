/* The SSRF guard of POST /api/admin/configure (issue 5). */
#include "test_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/net_guard.h"

static bool is_private(const char *text)
{
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof storage);
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&storage;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&storage;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &a->sin_addr), 1);
    }
    return net_guard_address_is_private((struct sockaddr *)&storage);
}

static void private_and_reserved_addresses_are_refused(void **state)
{
    (void)state;
    const char *refused[] = {"127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                             "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::",
                             "fe80::1", "fd00::1", "fc00::5", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                             "2001:db8::1"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (!is_private(refused[i]))
            fail_msg("%s was not refused", refused[i]);
    }
}

static void public_addresses_pass(void **state)
{
    (void)state;
    const char *allowed[] = {"8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "192.169.0.1",
                             "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        if (is_private(allowed[i]))
            fail_msg("%s was refused", allowed[i]);
    }
}

static void names_are_resolved_before_the_check(void **state)
{
    (void)state;
    agnes_error err;
    assert_int_equal(net_guard_check_host("localhost", &err), AGNES_ERR_FORBIDDEN);
    assert_non_null(strstr(err.message, "AGNES_ALLOW_PRIVATE_SOURCES=1"));
    assert_int_equal(net_guard_check_host("127.0.0.1", &err), AGNES_ERR_FORBIDDEN);
    assert_non_null(strstr(err.message, "resolves to 127.0.0.1"));
    assert_int_equal(net_guard_check_host("/var/run/postgresql", &err), AGNES_ERR_FORBIDDEN);
    assert_int_equal(net_guard_check_host("", &err), AGNES_ERR_INVALID);
    assert_int_equal(net_guard_check_host("203.0.114.7", &err), AGNES_OK); /* a literal needs no DNS */
}

/* Issue 13, item 17: only a loopback listener is a trial instance (make run); 0.0.0.0 and LAN addresses are public. */
static void loopback_listeners_are_told_from_public_ones(void **state)
{
    (void)state;
    const char *loopback[] = {"127.0.0.1:8000", "127.1.2.3:80", "localhost:8000", "[::1]:8000",
                              "[::ffff:127.0.0.1]:8000"};
    const char *public[] = {"0.0.0.0:8000", "[::]:8000", "10.0.0.5:8000", "203.0.113.9:80", "8000", "", "[::1]"};
    for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++)
        assert_true(net_guard_listen_is_loopback(loopback[i]));
    for (size_t i = 0; i < sizeof public / sizeof public[0]; i++)
        assert_false(net_guard_listen_is_loopback(public[i]));
    assert_true(net_guard_is_loopback_text("127.0.0.1") && net_guard_is_loopback_text("::1"));
    assert_false(net_guard_is_loopback_text("10.0.0.1") || net_guard_is_loopback_text(NULL) ||
                 net_guard_is_loopback_text("localhost.example.com"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(private_and_reserved_addresses_are_refused),
        cmocka_unit_test(public_addresses_pass),
        cmocka_unit_test(names_are_resolved_before_the_check),
        cmocka_unit_test(loopback_listeners_are_told_from_public_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
