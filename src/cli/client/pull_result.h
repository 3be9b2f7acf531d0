/*
 * pull_result.h - `agnes pull --result HANDLE [--format parquet|csv]`: the
 * whole result behind a handle (SPEC §17) into <workspace>/results/.
 */
#ifndef AGNES_CLI_CLIENT_PULL_RESULT_H
#define AGNES_CLI_CLIENT_PULL_RESULT_H

#include <stdbool.h>

/* Download GET /api/results/{handle}?format=... to
 * <workspace>/results/<handle>.<parquet|csv> (temp file + rename), then
 * print the path (or, with json, {result, path, format, bytes}).  Returns
 * the process exit code (client.h). */
int pull_result(const char *handle, const char *format, const char *workspace_dir, bool json, bool quiet);

#endif
