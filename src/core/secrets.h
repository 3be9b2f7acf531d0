/*
 * secrets.h - the JWT and session signing keys (SPEC §3).
 *
 * Order: JWT_SECRET_KEY / SESSION_SECRET from the environment or
 * .env_overlay; else the file in STATE_DIR; else 32 random bytes written as
 * 64 hex chars with mode 0600, atomically.  An empty or unreadable file is an
 * error, never a silent regeneration: a new key logs every user out and
 * invalidates every personal access token.
 */
#ifndef AGNES_CORE_SECRETS_H
#define AGNES_CORE_SECRETS_H

#include "core/config.h"
#include "core/error.h"
#include "core/paths.h"

#define SECRET_MAX_LEN 512

typedef struct agnes_secret {
    char value[SECRET_MAX_LEN + 1];
    const char *source; /* "env", "env_overlay", "file", "generated" */
} agnes_secret;

typedef struct agnes_secrets {
    agnes_secret jwt;
    agnes_secret session;
} agnes_secrets;

int secrets_load(agnes_secrets *secrets, const agnes_config *config, const agnes_paths *paths, agnes_error *err);

/* Load one secret: from config key, else file, else generate into file. */
int secrets_load_one(agnes_secret *secret, const agnes_config *config, enum config_key key, const char *file_path,
                     agnes_error *err);

/* Overwrite secret memory before it goes out of scope. */
void secrets_wipe(agnes_secrets *secrets);

#endif
