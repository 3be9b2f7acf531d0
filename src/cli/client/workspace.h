/*
 * workspace.h - an analyst's local mirror (SPEC §10):
 *
 *   <dir>/data/<table>.parquet    one file per table the analyst may read
 *   <dir>/agnes.duckdb            one view per table over those files
 *   <dir>/.agnes/state.json       what this workspace holds: {server, tables:
 *                                 {id: {hash, size_bytes}}, views, last_pull}
 *
 * The state lives in the workspace, so two workspaces never share (the
 * original kept one state file for all and confused them).  Only views this
 * state lists are ever replaced or dropped: the analyst's own views in
 * agnes.duckdb survive every pull.
 */
#ifndef AGNES_CLI_WORKSPACE_H
#define AGNES_CLI_WORKSPACE_H

#include <jansson.h>

#include "core/error.h"
#include "core/paths.h"

typedef struct workspace {
    char dir[AGNES_PATH_MAX];
    char data_dir[AGNES_PATH_MAX + 8];
    char state_dir[AGNES_PATH_MAX + 8];
    char database[AGNES_PATH_MAX + 16];
    json_t *state; /* owned */
} workspace;

/* dir_flag, else AGNES_WORKSPACE, else the current directory. */
int workspace_open(workspace *ws, const char *dir_flag, agnes_error *err);
int workspace_save(workspace *ws, agnes_error *err);
void workspace_close(workspace *ws);

/* data/<id>.parquet */
void workspace_table_path(const workspace *ws, const char *id, char *out, size_t size);

/* Make agnes.duckdb's views match the state: create or replace a view per
 * table with a file, drop the views of `removed` (ids the state owned). */
int workspace_write_views(workspace *ws, const json_t *removed, agnes_error *err);

#endif
