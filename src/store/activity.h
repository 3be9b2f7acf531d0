/*
 * activity.h - what a user has done lately, read from audit_log: the
 * dashboard's "your last pull".  A pull is a manifest fetch (GET
 * /api/sync/manifest, which `agnes pull` starts with), recorded as the
 * audit action "data.pull" with params {client, tables}.
 */
#ifndef AGNES_STORE_ACTIVITY_H
#define AGNES_STORE_ACTIVITY_H

#include <duckdb.h>
#include <jansson.h>

#include "core/error.h"

/* *out (new reference): {last_pull: {at, client, tables} | null}. */
int activity_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err);

#endif
