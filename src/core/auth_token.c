#include "core/auth_token.h"

#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void auth_token_new_id(char out[33])
{
    uint8_t bytes[16];
    randombytes_buf(bytes, sizeof bytes);
    util_hex_encode(bytes, sizeof bytes, out);
}

int auth_token_issue(const char *key, const auth_claims *claims, char **out, agnes_error *err)
{
    jwt_t *jwt = NULL;
    *out = NULL;
    if (jwt_new(&jwt) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory creating a token");
    int rc = AGNES_OK;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)key, (int)strlen(key)) != 0 ||
        jwt_add_grant(jwt, "sub", claims->sub) != 0 || jwt_add_grant(jwt, "email", claims->email) != 0 ||
        jwt_add_grant(jwt, "typ", claims->typ) != 0 || jwt_add_grant(jwt, "jti", claims->jti) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)claims->iat) != 0 ||
        (claims->exp != 0 && jwt_add_grant_int(jwt, "exp", (long)claims->exp) != 0) ||
        (strcmp(claims->typ, "session") == 0 &&
         jwt_add_grant_int(jwt, "sgen", (long)claims->session_generation) != 0)) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot build a token");
        goto done;
    }
    *out = jwt_encode_str(jwt);
    if (*out == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot sign a token");
done:
    jwt_free(jwt);
    return rc;
}

static int copy_grant(jwt_t *jwt, const char *name, char *out, size_t size)
{
    const char *value = jwt_get_grant(jwt, name);
    if (value == NULL || strlen(value) >= size)
        return -1;
    memcpy(out, value, strlen(value) + 1);
    return 0;
}

int auth_token_verify(const char *key, const char *token, int64_t now, auth_claims *claims, agnes_error *err)
{
    jwt_t *jwt = NULL;
    memset(claims, 0, sizeof *claims);
    /* With a key, libjwt checks the signature; the algorithm is checked below. */
    if (jwt_decode(&jwt, token, (const unsigned char *)key, (int)strlen(key)) != 0 || jwt == NULL)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Invalid or expired token");
    int rc = AGNES_OK;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256 || copy_grant(jwt, "sub", claims->sub, sizeof claims->sub) ||
        copy_grant(jwt, "typ", claims->typ, sizeof claims->typ) ||
        copy_grant(jwt, "jti", claims->jti, sizeof claims->jti)) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "Invalid or expired token");
        goto done;
    }
    copy_grant(jwt, "email", claims->email, sizeof claims->email);
    claims->iat = jwt_get_grant_int(jwt, "iat");
    claims->exp = jwt_get_grant_int(jwt, "exp"); /* 0 when absent */
    claims->session_generation = jwt_get_grant_int(jwt, "sgen"); /* 0 when absent */
    if (claims->exp != 0 && claims->exp <= now)
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "Invalid or expired token");
done:
    jwt_free(jwt);
    return rc;
}
