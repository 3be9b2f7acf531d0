/* Unit tests: argon2id passwords and HS256 tokens (SPEC §6). */
#include "test_helpers.h"

#include "core/auth_token.h"
#include "core/password.h"

static const char key[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_password_hash_verifies_only_the_right_password(void **unused)
{
    (void)unused;
    assert_true(sodium_init() >= 0);
    char hash[PASSWORD_HASH_MAX];
    agnes_error err;
    assert_int_equal(password_hash("correct horse battery", hash, &err), AGNES_OK);
    assert_true(strncmp(hash, "$argon2id$", 10) == 0);
    assert_true(password_verify(hash, "correct horse battery"));
    assert_false(password_verify(hash, "correct horse batterY"));
    assert_false(password_verify(NULL, "anything"));
    assert_false(password_verify("", ""));
}

static auth_claims sample_claims(int64_t now, int64_t exp)
{
    auth_claims c = {.iat = now, .exp = exp};
    snprintf(c.sub, sizeof c.sub, "user-1");
    snprintf(c.email, sizeof c.email, "ana@example.com");
    snprintf(c.typ, sizeof c.typ, "session");
    auth_token_new_id(c.jti);
    return c;
}

static void test_token_round_trip(void **unused)
{
    (void)unused;
    auth_claims in = sample_claims(1000, 5000), out;
    char *token = NULL;
    agnes_error err;
    assert_int_equal(auth_token_issue(key, &in, &token, &err), AGNES_OK);
    assert_int_equal(auth_token_verify(key, token, 2000, &out, &err), AGNES_OK);
    assert_string_equal(out.sub, "user-1");
    assert_string_equal(out.email, "ana@example.com");
    assert_string_equal(out.typ, "session");
    assert_string_equal(out.jti, in.jti);
    assert_int_equal(out.exp, 5000);
    free(token);
}

static void test_expired_wrong_key_and_tampered_tokens_are_rejected(void **unused)
{
    (void)unused;
    auth_claims in = sample_claims(1000, 5000), out;
    char *token = NULL;
    agnes_error err;
    assert_int_equal(auth_token_issue(key, &in, &token, &err), AGNES_OK);
    assert_int_not_equal(auth_token_verify(key, token, 5000, &out, &err), AGNES_OK);
    assert_string_equal(err.message, "Invalid or expired token");
    assert_int_not_equal(auth_token_verify("another-key-another-key-another-key-0000", token, 2000, &out, &err),
                         AGNES_OK);
    char *dot = strrchr(token, '.');
    dot[1] = dot[1] == 'A' ? 'B' : 'A'; /* flip the signature */
    assert_int_not_equal(auth_token_verify(key, token, 2000, &out, &err), AGNES_OK);
    free(token);
}

static void test_alg_none_is_rejected(void **unused)
{
    (void)unused;
    /* {"alg":"none","typ":"JWT"} . {"sub":"admin","typ":"session","jti":"x","iat":1} . (no signature) */
    const char *token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                        "eyJzdWIiOiJhZG1pbiIsInR5cCI6InNlc3Npb24iLCJqdGkiOiJ4IiwiaWF0IjoxfQ.";
    auth_claims out;
    agnes_error err;
    assert_int_not_equal(auth_token_verify(key, token, 2, &out, &err), AGNES_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_hash_verifies_only_the_right_password),
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_expired_wrong_key_and_tampered_tokens_are_rejected),
        cmocka_unit_test(test_alg_none_is_rejected),
    };
    return cmocka_run_group_tests_name("auth_crypto", tests, NULL, NULL);
}
