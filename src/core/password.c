#include "core/password.h"

#include <string.h>

/* A hash of a random password nobody knows, with the same cost parameters
 * as real hashes: verifying against it takes as long as a real check. */
static const char dummy_hash[] =
    "$argon2id$v=19$m=65536,t=2,p=1$gyAor7mJovf9EvggQU0LhQ$U3QhOOxAqn1+KyF70W/vPClhLsP5NQLxSGUimDQv/oY";

int password_hash(const char *password, char out[PASSWORD_HASH_MAX], agnes_error *err)
{
    if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "not enough memory to hash a password (argon2id needs 64 MiB)");
    return AGNES_OK;
}

bool password_verify(const char *stored_hash, const char *password)
{
    bool known = stored_hash != NULL && stored_hash[0] != '\0';
    int rc = crypto_pwhash_str_verify(known ? stored_hash : dummy_hash, password, strlen(password));
    return known && rc == 0;
}
