/*
 * keboola_meta.c - Storage metadata as our names and DuckDB types.
 *
 * Facts (Keboola Storage API documentation, table detail): a typed table
 * (isTyped) carries definition.columns[{name, definition{type, length},
 * basetype}]; other tables describe columns only through columnMetadata,
 * an object keyed by column name of [{key, value, provider}] - or [] when
 * empty; an alias table keeps it under sourceTable.columnMetadata.  The
 * base types are STRING, INTEGER, NUMERIC, FLOAT, BOOLEAN, DATE and
 * TIMESTAMP.  Several providers may describe one column; the admin's own
 * ("user") wins, Storage's guess comes last.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sync/keboola.h"

void keboola_view_name(const char *table_id, char *out, size_t out_size)
{
    char joined[512];
    const char *first = strchr(table_id, '.');
    const char *last = strrchr(table_id, '.');
    if (first != NULL && last != NULL && last > first) {
        const char *bucket = first + 1;
        size_t bucket_len = (size_t)(last - bucket);
        if (bucket_len > 2 && strncmp(bucket, "c-", 2) == 0) {
            bucket += 2;
            bucket_len -= 2;
        }
        snprintf(joined, sizeof joined, "%.*s_%.*s_%s", (int)(first - table_id), table_id, (int)bucket_len, bucket,
                 last + 1);
    } else {
        snprintf(joined, sizeof joined, "%s", table_id);
    }
    size_t n = 0;
    if (out_size == 0)
        return;
    if (isdigit((unsigned char)joined[0]) && out_size > 3)
        n = (size_t)snprintf(out, out_size, "t_");
    for (const char *p = joined; *p != '\0' && n + 1 < out_size && n < 64; p++) {
        char c = isalnum((unsigned char)*p) && (unsigned char)*p < 128 ? (char)tolower((unsigned char)*p) : '_';
        if (c == '_' && n > 0 && out[n - 1] == '_')
            continue;
        out[n++] = c;
    }
    while (n > 1 && out[n - 1] == '_')
        n--;
    out[n] = '\0';
    if (n == 0)
        snprintf(out, out_size, "_");
}

static int provider_rank(const char *provider)
{
    static const char *const order[] = {"user", "ai-metadata-enrichment", "keboola.snowflake-transformation",
                                        "storage"};
    for (int i = 0; provider != NULL && i < 4; i++)
        if (strcmp(provider, order[i]) == 0)
            return i;
    return 4; /* any other component, before nothing */
}

/* The column's metadata list ([] or absent when none). */
static const json_t *column_metadata(const json_t *detail, const char *name)
{
    const json_t *all = json_object_get(detail, "columnMetadata");
    const json_t *source = json_object_get(json_object_get(detail, "sourceTable"), "columnMetadata");
    if (json_is_true(json_object_get(detail, "isAlias")) && json_is_object(source))
        all = source;
    if (!json_is_object(all)) /* [] when empty */
        all = source;
    return json_is_object(all) ? json_object_get(all, name) : NULL;
}

/* The value of the best-ranked entry with key in metadata, or NULL. */
static const char *best_value(const json_t *metadata, const char *key)
{
    const char *best = NULL;
    int best_rank = 99;
    size_t i;
    const json_t *entry;
    json_array_foreach(metadata, i, entry) {
        const char *entry_key = json_string_value(json_object_get(entry, "key"));
        const char *value = json_string_value(json_object_get(entry, "value"));
        int rank = provider_rank(json_string_value(json_object_get(entry, "provider")));
        if (entry_key != NULL && value != NULL && strcmp(entry_key, key) == 0 && rank < best_rank) {
            best = value;
            best_rank = rank;
        }
    }
    return best;
}

static const json_t *typed_definition(const json_t *detail, const char *name)
{
    const json_t *columns = json_object_get(json_object_get(detail, "definition"), "columns");
    size_t i;
    const json_t *column;
    json_array_foreach(columns, i, column) {
        const char *column_name = json_string_value(json_object_get(column, "name"));
        if (column_name != NULL && strcmp(column_name, name) == 0)
            return column;
    }
    return NULL;
}

static void map_type(const char *basetype, const char *native, const char *length, char *out, size_t out_size)
{
    bool zoned = native != NULL && (strncasecmp(native, "TIMESTAMP_TZ", 12) == 0 ||
                                    strncasecmp(native, "TIMESTAMP_LTZ", 13) == 0 ||
                                    strncasecmp(native, "TIMESTAMPTZ", 11) == 0 ||
                                    strncasecmp(native, "TIMESTAMP WITH TIME ZONE", 24) == 0);
    if (basetype == NULL)
        snprintf(out, out_size, "VARCHAR");
    else if (strcasecmp(basetype, "INTEGER") == 0)
        snprintf(out, out_size, "BIGINT");
    else if (strcasecmp(basetype, "FLOAT") == 0)
        snprintf(out, out_size, "DOUBLE");
    else if (strcasecmp(basetype, "BOOLEAN") == 0)
        snprintf(out, out_size, "BOOLEAN");
    else if (strcasecmp(basetype, "DATE") == 0)
        snprintf(out, out_size, "DATE");
    else if (strcasecmp(basetype, "TIMESTAMP") == 0)
        snprintf(out, out_size, zoned ? "TIMESTAMPTZ" : "TIMESTAMP");
    else if (strcasecmp(basetype, "NUMERIC") == 0) {
        long precision = -1, scale = 0;
        char *end = NULL;
        if (length != NULL && length[0] != '\0') {
            precision = strtol(length, &end, 10);
            if (end != NULL && *end == ',')
                scale = strtol(end + 1, &end, 10);
            if (end == NULL || *end != '\0')
                precision = -1;
        }
        if (precision >= 1 && precision <= 38 && scale >= 0 && scale <= precision)
            snprintf(out, out_size, "DECIMAL(%ld,%ld)", precision, scale);
        else
            snprintf(out, out_size, "DOUBLE");
    } else
        snprintf(out, out_size, "VARCHAR");
}

void keboola_column_type(const json_t *detail, const char *name, char *out, size_t out_size)
{
    const json_t *typed = json_is_true(json_object_get(detail, "isTyped")) ? typed_definition(detail, name) : NULL;
    if (typed != NULL) {
        const json_t *definition = json_object_get(typed, "definition");
        char length[32];
        keboola_id_text(json_object_get(definition, "length"), length, sizeof length);
        map_type(json_string_value(json_object_get(typed, "basetype")),
                 json_string_value(json_object_get(definition, "type")), length, out, out_size);
        return;
    }
    const json_t *metadata = column_metadata(detail, name);
    const char *basetype = best_value(metadata, "KBC.datatype.basetype");
    const char *native = best_value(metadata, "KBC.datatype.type");
    map_type(basetype != NULL ? basetype : native, native, best_value(metadata, "KBC.datatype.length"), out,
             out_size);
}

const char *keboola_column_description(const json_t *detail, const char *name)
{
    return best_value(column_metadata(detail, name), "KBC.description");
}

const char *keboola_table_description(const json_t *detail)
{
    const char *own = best_value(json_object_get(detail, "metadata"), "KBC.description");
    return own != NULL ? own : best_value(json_object_get(json_object_get(detail, "sourceTable"), "metadata"),
                                          "KBC.description");
}

int64_t keboola_parse_time(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (text == NULL)
        return -1;
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        rest = strptime(text, "%Y-%m-%d %H:%M:%S", &tm);
    if (rest == NULL)
        return -1;
    if (*rest == '.') /* fractions of a second */
        while (isdigit((unsigned char)*++rest))
            ;
    int64_t seconds = (int64_t)timegm(&tm);
    if (*rest == '\0' || strcmp(rest, "Z") == 0)
        return seconds;
    if ((*rest != '+' && *rest != '-') || !isdigit((unsigned char)rest[1]) || !isdigit((unsigned char)rest[2]))
        return -1;
    int sign = *rest == '-' ? -1 : 1;
    int hours = (rest[1] - '0') * 10 + (rest[2] - '0');
    const char *minutes_at = rest[3] == ':' ? rest + 4 : rest + 3;
    int minutes = 0;
    if (*minutes_at != '\0') {
        if (!isdigit((unsigned char)minutes_at[0]) || !isdigit((unsigned char)minutes_at[1]) || minutes_at[2] != '\0')
            return -1;
        minutes = (minutes_at[0] - '0') * 10 + (minutes_at[1] - '0');
    }
    return seconds - sign * (int64_t)(hours * 3600 + minutes * 60);
}
