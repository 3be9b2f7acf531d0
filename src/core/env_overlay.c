#include "core/env_overlay.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#define ENV_OVERLAY_MAX_BYTES (1024 * 1024)

static bool valid_key(const char *key)
{
    if (!(isalpha((unsigned char)key[0]) || key[0] == '_'))
        return false;
    for (const char *p = key; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return false;
    return true;
}

/* Strip one pair of matching surrounding quotes: people write KEY="value". */
static void strip_quotes(char *value)
{
    size_t n = strlen(value);
    if (n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n - 1] == value[0]) {
        memmove(value, value + 1, n - 2);
        value[n - 2] = '\0';
    }
}

static int add_entry(env_overlay *overlay, const char *key, const char *value, int line, agnes_error *err)
{
    env_overlay_entry *grown = realloc(overlay->entries, (overlay->count + 1) * sizeof *grown);
    if (grown == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading .env_overlay");
    overlay->entries = grown;
    env_overlay_entry *e = &grown[overlay->count];
    e->key = util_strdup(key);
    e->value = util_strdup(value);
    e->line = line;
    if (e->key == NULL || e->value == NULL) {
        free(e->key);
        free(e->value);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading .env_overlay");
    }
    overlay->count++;
    return AGNES_OK;
}

int env_overlay_parse(env_overlay *overlay, const char *text, const char *path, agnes_error *err)
{
    overlay->entries = NULL;
    overlay->count = 0;
    char *copy = util_strdup(text);
    if (copy == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading %s", path);
    int line_no = 0;
    int rc = AGNES_OK;
    char *save = NULL;
    /* strtok_r would merge empty lines and break line numbers, so split by hand. */
    for (char *line = copy; line != NULL; line = save) {
        char *newline = strchr(line, '\n');
        save = newline ? newline + 1 : NULL;
        if (newline)
            *newline = '\0';
        line_no++;
        util_trim(line);
        if (line[0] == '\0' || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            log_warn("msg=\"ignoring line without '=' in env overlay\" file=%s line=%d", path, line_no);
            continue;
        }
        *eq = '\0';
        char *key = util_trim(line);
        char *value = util_trim(eq + 1);
        if (!valid_key(key)) {
            log_warn("msg=\"ignoring invalid variable name in env overlay\" file=%s line=%d", path, line_no);
            continue;
        }
        strip_quotes(value);
        rc = add_entry(overlay, key, value, line_no, err);
        if (rc != AGNES_OK)
            break;
    }
    free(copy);
    if (rc != AGNES_OK)
        env_overlay_free(overlay);
    return rc;
}

int env_overlay_load(env_overlay *overlay, const char *path, agnes_error *err)
{
    overlay->entries = NULL;
    overlay->count = 0;
    char *text = NULL;
    int rc = util_read_file(path, ENV_OVERLAY_MAX_BYTES, &text, NULL, err);
    if (rc == AGNES_ERR_NOT_FOUND) {
        agnes_error_clear(err);
        return AGNES_OK;
    }
    if (rc != AGNES_OK)
        return agnes_error_wrap(err, "reading the env overlay (fix its permissions or remove it)");
    rc = env_overlay_parse(overlay, text, path, err);
    free(text);
    return rc;
}

const char *env_overlay_get(const env_overlay *overlay, const char *key)
{
    for (size_t i = overlay->count; i > 0; i--)
        if (strcmp(overlay->entries[i - 1].key, key) == 0)
            return overlay->entries[i - 1].value;
    return NULL;
}

void env_overlay_free(env_overlay *overlay)
{
    for (size_t i = 0; i < overlay->count; i++) {
        free(overlay->entries[i].key);
        free(overlay->entries[i].value);
    }
    free(overlay->entries);
    overlay->entries = NULL;
    overlay->count = 0;
}

int env_overlay_file_set(const char *path, const char *key, const char *value, agnes_error *err)
{
    if (!valid_key(key) || strpbrk(value, "\r\n") != NULL)
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s cannot be saved: a value may not span lines", key);
    char *old = NULL;
    size_t old_len = 0;
    if (util_file_exists(path) && util_read_file(path, 1 << 20, &old, &old_len, err) != AGNES_OK)
        return err->code;
    strbuf text;
    strbuf_init(&text);
    size_t key_len = strlen(key);
    for (char *line = old, *next; line != NULL && *line != '\0'; line = next) {
        char *newline = strchr(line, '\n');
        next = newline ? newline + 1 : NULL;
        size_t len = newline ? (size_t)(newline - line) : strlen(line);
        const char *start = line;
        while (*start == ' ' || *start == '\t')
            start++;
        bool same_key = strncmp(start, key, key_len) == 0 && (start[key_len] == '=' || start[key_len] == ' ');
        if (!same_key) {
            strbuf_append(&text, line, len);
            strbuf_append_char(&text, '\n');
        }
    }
    strbuf_appendf(&text, "%s=\"%s\"\n", key, value);
    int rc = strbuf_failed(&text) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                  : util_write_file_atomic(path, text.data, text.len, 0600, err);
    if (old != NULL)
        explicit_bzero(old, old_len);
    free(old);
    if (text.data != NULL)
        explicit_bzero(text.data, text.len);
    strbuf_free(&text);
    return rc;
}
