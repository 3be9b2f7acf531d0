#include "store/table_files.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "store/duck.h"

#define HASH_BLOCK (1 << 20)

int table_files_get(duckdb_connection conn, const char *table_id, table_file *out, agnes_error *err)
{
    const char *params[] = {table_id};
    duckdb_result result;
    memset(out, 0, sizeof *out);
    if (duck_query_params(conn,
                          "SELECT table_id, source, path, size_bytes, mtime_ns, inode, sha256 FROM table_files"
                          " WHERE lower(table_id) = lower($1)",
                          params, 1, &result, err))
        return err->code;
    int rc = AGNES_OK;
    if (duckdb_row_count(&result) == 0) {
        rc = agnes_error_set(err, AGNES_ERR_NOT_FOUND, "table '%s' has no file", table_id);
    } else {
        duck_result_text(&result, 0, 0, out->table_id, sizeof out->table_id);
        duck_result_text(&result, 1, 0, out->source, sizeof out->source);
        duck_result_text(&result, 2, 0, out->path, sizeof out->path);
        out->size_bytes = duckdb_value_int64(&result, 3, 0);
        out->mtime_ns = duckdb_value_int64(&result, 4, 0);
        out->inode = duckdb_value_int64(&result, 5, 0);
        duck_result_text(&result, 6, 0, out->sha256, sizeof out->sha256);
    }
    duckdb_destroy_result(&result);
    return rc;
}

int table_files_map_json(duckdb_connection conn, json_t **out, agnes_error *err)
{
    json_t *rows = NULL;
    *out = NULL;
    if (duck_query_json(conn, "SELECT table_id, sha256, size_bytes FROM table_files", NULL, 0, &rows, err))
        return err->code;
    *out = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_object_set_new(*out, json_string_value(json_object_get(row, "table_id")),
                            json_pack("{s:O, s:O}", "sha256", json_object_get(row, "sha256"), "size_bytes",
                                      json_object_get(row, "size_bytes")));
    json_decref(rows);
    return AGNES_OK;
}

int table_files_upsert(duckdb_connection conn, const table_file *f, agnes_error *err)
{
    char size[32], mtime[32], inode[32];
    snprintf(size, sizeof size, "%lld", (long long)f->size_bytes);
    snprintf(mtime, sizeof mtime, "%lld", (long long)f->mtime_ns);
    snprintf(inode, sizeof inode, "%lld", (long long)f->inode);
    const char *params[] = {f->table_id, f->source, f->path, size, mtime, inode, f->sha256};
    return duck_exec_params(conn,
                            "INSERT OR REPLACE INTO table_files (table_id, source, path, size_bytes, mtime_ns, inode,"
                            " sha256, hashed_at) VALUES ($1, $2, $3, CAST($4 AS BIGINT), CAST($5 AS BIGINT),"
                            " CAST($6 AS BIGINT), $7, current_timestamp)",
                            params, 7, err);
}

int table_files_retain(duckdb_connection conn, const char *published_json, agnes_error *err)
{
    const char *params[] = {published_json};
    return duck_exec_params(conn,
                            "DELETE FROM table_files WHERE table_id NOT IN"
                            " (SELECT unnest(CAST(CAST($1 AS JSON) AS VARCHAR[])))",
                            params, 1, err);
}

bool table_file_stat(table_file *f)
{
    struct stat st;
    if (stat(f->path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    f->size_bytes = (int64_t)st.st_size;
    f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    f->inode = (int64_t)st.st_ino;
    return true;
}

bool table_file_is_current(const table_file *f)
{
    table_file now = *f;
    return table_file_stat(&now) && now.size_bytes == f->size_bytes && now.mtime_ns == f->mtime_ns &&
           now.inode == f->inode && f->sha256[0] != '\0';
}

int table_file_hash(table_file *f, agnes_error *err)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", f->path, strerror(errno));
    unsigned char *block = malloc(HASH_BLOCK), digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    ssize_t n = 0;
    while (block != NULL && (n = read(fd, block, HASH_BLOCK)) > 0)
        crypto_hash_sha256_update(&state, block, (unsigned long long)n);
    int rc = AGNES_OK;
    if (block == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    else if (n < 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", f->path, strerror(errno));
    else {
        crypto_hash_sha256_final(&state, digest);
        util_hex_encode(digest, sizeof digest, f->sha256);
    }
    free(block);
    close(fd);
    return rc;
}
