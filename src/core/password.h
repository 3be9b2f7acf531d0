/*
 * password.h - password hashing with argon2id (libsodium crypto_pwhash_str).
 *
 * Hashes are PHC strings ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"),
 * the same format the original stored, so existing hashes verify.
 * password_verify() costs the same whether or not a hash exists: pass NULL
 * for an unknown user and a fixed dummy hash is checked instead, so the
 * response time does not reveal which emails have accounts.
 */
#ifndef AGNES_CORE_PASSWORD_H
#define AGNES_CORE_PASSWORD_H

#include <sodium.h>
#include <stdbool.h>

#include "core/error.h"

#define PASSWORD_HASH_MAX crypto_pwhash_STRBYTES
#define PASSWORD_MIN_LENGTH 12
#define PASSWORD_MAX_LENGTH 1024

int password_hash(const char *password, char out[PASSWORD_HASH_MAX], agnes_error *err);

/* True when password matches stored_hash; stored_hash may be NULL. */
bool password_verify(const char *stored_hash, const char *password);

#endif
