#include "core/secrets.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

#define SECRET_RANDOM_BYTES 32
#define SECRET_MIN_RECOMMENDED 32

static int read_secret_file(agnes_secret *secret, const char *path, agnes_error *err)
{
    char *text = NULL;
    int rc = util_read_file(path, 64 * 1024, &text, NULL, err);
    if (rc != AGNES_OK)
        return rc;
    util_trim(text);
    if (text[0] == '\0') {
        free(text);
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "secret file %s is empty. Refusing to generate a new key, because that would log "
                               "out every user and invalidate every token. Fix: restore the file from backup, or "
                               "delete it to generate a fresh key on the next start",
                               path);
    }
    if (strlen(text) > SECRET_MAX_LEN) {
        free(text);
        return agnes_error_set(err, AGNES_ERR_STATE, "secret file %s holds more than %d characters; "
                               "it is probably not a secret file — check its contents", path, SECRET_MAX_LEN);
    }
    snprintf(secret->value, sizeof secret->value, "%s", text);
    sodium_memzero(text, strlen(text));
    free(text);
    secret->source = "file";
    return AGNES_OK;
}

static int generate_secret_file(agnes_secret *secret, const char *path, agnes_error *err)
{
    uint8_t bytes[SECRET_RANDOM_BYTES];
    randombytes_buf(bytes, sizeof bytes);
    util_hex_encode(bytes, sizeof bytes, secret->value);
    sodium_memzero(bytes, sizeof bytes);
    if (util_write_file_atomic(path, secret->value, strlen(secret->value), 0600, err) != AGNES_OK)
        return agnes_error_wrap(err, "writing a new secret (make STATE_DIR writable for the server's user)");
    secret->source = "generated";
    log_info("msg=\"generated a new secret\" file=%s", path);
    return AGNES_OK;
}

int secrets_load_one(agnes_secret *secret, const agnes_config *config, enum config_key key, const char *file_path,
                     agnes_error *err)
{
    memset(secret, 0, sizeof *secret);
    const config_value *v = &config->values[key];
    if (v->text != NULL && v->text[0] != '\0') {
        if (strlen(v->text) > SECRET_MAX_LEN)
            return agnes_error_set(err, AGNES_ERR_CONFIG, "%s is longer than %d characters", config_key_name(key),
                                   SECRET_MAX_LEN);
        snprintf(secret->value, sizeof secret->value, "%s", v->text);
        secret->source = config_source_name(v->source);
    } else {
        int rc = read_secret_file(secret, file_path, err);
        if (rc == AGNES_ERR_NOT_FOUND) {
            agnes_error_clear(err);
            rc = generate_secret_file(secret, file_path, err);
        } else if (rc == AGNES_ERR_IO) {
            return agnes_error_wrap(err, "secret file is unreadable (fix its owner/permissions: the server "
                                         "runs as its own user and needs read access)");
        }
        if (rc != AGNES_OK)
            return rc;
    }
    if (strlen(secret->value) < SECRET_MIN_RECOMMENDED)
        log_warn("msg=\"secret is shorter than 32 characters; use a longer one\" key=%s",
                 config_spec(key)->env_name);
    return AGNES_OK;
}

int secrets_load(agnes_secrets *secrets, const agnes_config *config, const agnes_paths *paths, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    if (sodium_init() < 0)
        return agnes_error_set(err, AGNES_ERR_STATE, "libsodium failed to initialise (no entropy source?)");
    if (paths_state_file(paths, STATE_JWT_SECRET, path, sizeof path, err) ||
        secrets_load_one(&secrets->jwt, config, CFG_JWT_SECRET, path, err))
        return err->code;
    if (paths_state_file(paths, STATE_SESSION_SECRET, path, sizeof path, err) ||
        secrets_load_one(&secrets->session, config, CFG_SESSION_SECRET, path, err))
        return err->code;
    return AGNES_OK;
}

void secrets_wipe(agnes_secrets *secrets)
{
    sodium_memzero(secrets, sizeof *secrets);
}
