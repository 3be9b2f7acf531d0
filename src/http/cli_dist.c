#include "http/cli_dist.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/targz.h"
#include "core/util.h"

#define TARBALL_NAME "agnes-linux-x86_64.tar.gz"

/* scripts/install-cli.sh, embedded at build time (the Makefile makes this
 * object depend on it), so the installer stays a real, shellcheck-able file. */
__asm__(".section .rodata\n"
        ".globl agnes_install_script_start\n"
        ".hidden agnes_install_script_start\n"
        ".globl agnes_install_script_end\n"
        ".hidden agnes_install_script_end\n"
        "agnes_install_script_start:\n"
        ".incbin \"scripts/install-cli.sh\"\n"
        "agnes_install_script_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char agnes_install_script_start[] __attribute__((visibility("hidden")));
extern const char agnes_install_script_end[] __attribute__((visibility("hidden")));

typedef struct built_tarball {
    char path[AGNES_PATH_MAX + 64];
    char sha256[65];
} built_tarball;

static int find_duckdb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const char *name = info->dlpi_name, *base = name ? strrchr(name, '/') : NULL;
    if (base != NULL && strncmp(base + 1, "libduckdb.so", 12) == 0) {
        snprintf(data, AGNES_PATH_MAX, "%s", name);
        return 1;
    }
    return 0;
}

/* "dev:ino:size:mtime" of a file: changes when the file is replaced. */
static int file_identity(const char *path, char *out, size_t size, agnes_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    snprintf(out, size, "%llu:%llu:%lld:%lld.%09ld", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
             (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    return AGNES_OK;
}

/* Read a small text file written by this module into out ("" when missing). */
static void read_small(const char *path, char *out, size_t size)
{
    char *text = NULL;
    size_t len = 0;
    agnes_error ignored;
    out[0] = '\0';
    if (util_file_exists(path) && util_read_file(path, 4096, &text, &len, &ignored) == AGNES_OK)
        snprintf(out, size, "%s", util_trim(text));
    free(text);
}

/* The tarball of the running binary, built once per binary. */
static int ensure_tarball(http_context *ctx, built_tarball *out, agnes_error *err)
{
    char dir[AGNES_PATH_MAX], lock_path[AGNES_PATH_MAX + 16], key_path[AGNES_PATH_MAX + 64],
        sha_path[AGNES_PATH_MAX + 64], library[AGNES_PATH_MAX] = "", exe_id[128], lib_id[128], key[600],
        stored[600];
#ifndef __x86_64__
    return agnes_error_set(err, AGNES_ERR_STATE, "this server is not an x86_64 build; its binary cannot be served as "
                                                 TARBALL_NAME);
#endif
    if (paths_data_file(&ctx->runtime->paths, DATA_CLI_DIR, dir, sizeof dir, err) != AGNES_OK)
        return err->code;
    dl_iterate_phdr(find_duckdb, library);
    if (library[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_STATE, "cannot find the libduckdb.so this process loaded");
    /* /proc/self/exe opens the running binary even after an upgrade replaced the file. */
    if (file_identity("/proc/self/exe", exe_id, sizeof exe_id, err) ||
        file_identity(library, lib_id, sizeof lib_id, err))
        return err->code;
    snprintf(key, sizeof key, "%s exe=%s lib=%s", ctx->runtime->version.version, exe_id, lib_id);
    if (util_mkdir_p(dir, 0755, err) != AGNES_OK ||
        util_format(lock_path, sizeof lock_path, err, "%s/.lock", dir) != AGNES_OK ||
        util_format(out->path, sizeof out->path, err, "%s/" TARBALL_NAME, dir) != AGNES_OK ||
        util_format(key_path, sizeof key_path, err, "%s/" TARBALL_NAME ".key", dir) != AGNES_OK ||
        util_format(sha_path, sizeof sha_path, err, "%s/" TARBALL_NAME ".sha256", dir) != AGNES_OK)
        return err->code;
    int lock = util_lock_file(lock_path, 0644, true, err); /* concurrent first requests wait for one build */
    if (lock < 0)
        return err->code;
    int rc = AGNES_OK;
    read_small(key_path, stored, sizeof stored);
    read_small(sha_path, out->sha256, sizeof out->sha256);
    if (strcmp(stored, key) == 0 && strlen(out->sha256) == 64 && util_file_exists(out->path))
        goto done;
    double started = util_monotonic_ms();
    targz_entry entries[] = {
        {"agnes/bin/agnes", "/proc/self/exe", 0755},
        {"agnes/lib/agnes/libduckdb.so", library, 0644},
    };
    /* Level 1: measured on libduckdb.so 1.4.4, 23.5 MB in 1.5 s, against 20.9 MB in 6.3 s
     * at level 6; the first analyst to ask waits for it, the bytes saved are few. */
    rc = targz_write(out->path, entries, 2, 1, out->sha256, err);
    if (rc == AGNES_OK)
        rc = util_write_file_atomic(sha_path, out->sha256, 64, 0644, err);
    if (rc == AGNES_OK) /* the key last: a half-done build is never taken for a finished one */
        rc = util_write_file_atomic(key_path, key, strlen(key), 0644, err);
    if (rc == AGNES_OK)
        log_info("msg=\"built the CLI tarball\" path=%s sha256=%s ms=%.0f", out->path, out->sha256,
                 util_monotonic_ms() - started);
done:
    close(lock);
    return rc;
}

bool http_public_url(http_context *ctx, const http_request *req, char *out, size_t size)
{
    const char *domain = config_get_string(&ctx->runtime->config, CFG_SERVER_DOMAIN);
    if (domain[0] != '\0') {
        snprintf(out, size, "https://%s", domain);
        return true;
    }
    const char *host = http_request_header(req, "Host");
    if (host == NULL || host[0] == '\0' || strlen(host) > 255)
        return false;
    for (const char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && strchr(".-:[]_", *p) == NULL)
            return false;
    const char *proto = http_request_header(req, "X-Forwarded-Proto");
    bool https = config_get_bool(&ctx->runtime->config, CFG_TRUST_PROXY) && proto != NULL &&
                 strcmp(proto, "https") == 0;
    snprintf(out, size, "%s://%s", https ? "https" : "http", host);
    return true;
}

static void respond_build_failure(http_response *resp, const http_request *req, agnes_error *err)
{
    log_error("msg=\"cannot build the CLI tarball\" request_id=%s detail=\"%s\"", req->request_id, err->message);
    http_respond_error(resp, 503,
                       "The CLI download is not available on this server right now; the server's log says why "
                       "(request id in the log). Build from source meanwhile: make install PREFIX=$HOME/.local.",
                       NULL);
}

/* Replace every `name` in text with value. */
static void substitute(strbuf *out, const char *text, size_t len, const char *names[], const char *values[],
                       size_t count)
{
    for (size_t i = 0; i < len;) {
        size_t k = 0;
        for (; k < count; k++)
            if (strncmp(text + i, names[k], strlen(names[k])) == 0)
                break;
        if (k < count) {
            strbuf_append_str(out, values[k]);
            i += strlen(names[k]);
        } else {
            strbuf_append_char(out, text[i++]);
        }
    }
}

void cli_dist_handle_install_script(http_context *ctx, const http_request *req, http_response *resp)
{
    char url[400];
    built_tarball tarball;
    agnes_error err;
    if (!http_public_url(ctx, req, url, sizeof url)) {
        http_respond_error(resp, 400,
                           "Cannot tell this server's address from the request's Host header; request the script "
                           "by the server's name or address, or set DOMAIN.",
                           NULL);
        return;
    }
    if (ensure_tarball(ctx, &tarball, &err) != AGNES_OK) {
        respond_build_failure(resp, req, &err);
        return;
    }
    const char *names[] = {"@AGNES_SERVER@", "@AGNES_VERSION@", "@AGNES_SHA256@"};
    const char *values[] = {url, ctx->runtime->version.version, tarball.sha256};
    strbuf script;
    strbuf_init(&script);
    substitute(&script, agnes_install_script_start, (size_t)(agnes_install_script_end - agnes_install_script_start),
               names, values, 3);
    if (strbuf_failed(&script)) {
        strbuf_free(&script);
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory");
        http_respond_internal(resp, req, &err);
        return;
    }
    http_response_add_header(resp, "Cache-Control", "no-store");
    http_respond_raw(resp, 200, "text/x-shellscript; charset=utf-8", script.data, script.len);
}

void cli_dist_handle_tarball(http_context *ctx, const http_request *req, http_response *resp)
{
    built_tarball tarball;
    agnes_error err;
    char etag[80];
    if (ensure_tarball(ctx, &tarball, &err) != AGNES_OK) {
        respond_build_failure(resp, req, &err);
        return;
    }
    snprintf(etag, sizeof etag, "\"%s\"", tarball.sha256);
    http_response_add_header(resp, "ETag", etag);
    http_response_add_header(resp, "Content-Disposition", "attachment; filename=\"" TARBALL_NAME "\"");
    const char *if_none_match = http_request_header(req, "If-None-Match");
    if (if_none_match != NULL && strcmp(if_none_match, etag) == 0) {
        http_respond_raw(resp, 304, "application/gzip", NULL, 0);
        return;
    }
    int fd = open(tarball.path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        agnes_error_set(&err, AGNES_ERR_IO, "cannot open %s: %s", tarball.path, strerror(errno));
        respond_build_failure(resp, req, &err);
        return;
    }
    http_respond_file(resp, 200, "application/gzip", fd, 0, (int64_t)st.st_size);
}

void cli_dist_handle_checksum(http_context *ctx, const http_request *req, http_response *resp)
{
    built_tarball tarball;
    agnes_error err;
    if (ensure_tarball(ctx, &tarball, &err) != AGNES_OK) {
        respond_build_failure(resp, req, &err);
        return;
    }
    char *line = NULL;
    if (asprintf(&line, "%s  " TARBALL_NAME "\n", tarball.sha256) < 0) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory");
        http_respond_internal(resp, req, &err);
        return;
    }
    http_respond_raw(resp, 200, "text/plain; charset=utf-8", line, strlen(line));
}
