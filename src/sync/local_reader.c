#include "sync/local_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/utf8.h"
#include "store/duck.h"
#include "sync/local_sniff.h"

/* Significant digits every DOUBLE reproduces exactly (DBL_DIG). */
#define DOUBLE_EXACT_DIGITS 15
#define TYPE_NAME_MAX 64
/* The message of the guard in local_reader_append_select. */
#define LOCAL_READER_WIDEN "agnes: a value has more digits than a DOUBLE keeps"

void local_read_options_init(local_read_options *options)
{
    memset(options, 0, sizeof *options);
    options->delimiter = LOCAL_DETECT;
    options->quote = LOCAL_DETECT;
    options->escape = LOCAL_DETECT;
    options->header = LOCAL_DETECT;
    options->decimal_separator = LOCAL_DETECT;
    options->thousands_separator = LOCAL_DETECT;
}

void local_reader_free(local_reader *reader)
{
    json_decref(reader->given);
    json_decref(reader->types);
    json_decref(reader->columns);
    json_decref(reader->guarded);
    json_decref(reader->described);
    json_decref(reader->grouped);
    reader->given = reader->types = reader->columns = reader->guarded = reader->described = reader->grouped = NULL;
}

static bool is_csv(const char *format)
{
    return strcmp(format, "csv") == 0 || strcmp(format, "tsv") == 0;
}

static bool is_json(const char *format)
{
    return strcmp(format, "json") == 0 || strcmp(format, "ndjson") == 0;
}

/* ---- SQL pieces -------------------------------------------------------- */

static void append_char_literal(strbuf *sql, int c)
{
    char text[2] = {(char)(c > 0 ? c : 0), '\0'};
    duck_append_literal(sql, text);
}

/* sniff_csv(file, delim=...) for quote, escape and header; the caller's
 * choices go in so the sniffer only decides what is left. */
static int sniff(duckdb_connection conn, const char *file, local_reader *r, const local_read_options *o,
                 agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT Quote, Escape, HasHeader FROM sniff_csv(");
    duck_append_literal(&sql, file);
    strbuf_append_str(&sql, ", delim = ");
    append_char_literal(&sql, r->delimiter);
    if (o->quote != LOCAL_DETECT) {
        strbuf_append_str(&sql, ", quote = ");
        append_char_literal(&sql, o->quote);
    }
    if (o->escape != LOCAL_DETECT) {
        strbuf_append_str(&sql, ", escape = ");
        append_char_literal(&sql, o->escape);
    }
    if (o->header != LOCAL_DETECT)
        strbuf_appendf(&sql, ", header = %s", o->header ? "true" : "false");
    if (r->sample_size != 0)
        strbuf_appendf(&sql, ", sample_size = %lld", r->sample_size);
    strbuf_append_char(&sql, ')');
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    duckdb_result result;
    /* The defaults when the sniffer gives up (a ragged file): the standard
     * quote, and a header; the read then fails on the bad line, by number. */
    int quote = '"', escape = LOCAL_DETECT, header = 1;
    if (duckdb_query(conn, sql.data, &result) == DuckDBSuccess && duckdb_row_count(&result) == 1) {
        char text[8];
        if (duck_result_text(&result, 0, 0, text, sizeof text) && strlen(text) == 1)
            quote = (unsigned char)text[0];
        if (duck_result_text(&result, 1, 0, text, sizeof text) && strlen(text) == 1)
            escape = (unsigned char)text[0];
        header = duckdb_value_boolean(&result, 2, 0) ? 1 : 0;
    }
    duckdb_destroy_result(&result);
    strbuf_free(&sql);
    r->quote = o->quote != LOCAL_DETECT ? o->quote : quote;
    r->escape = o->escape != LOCAL_DETECT ? o->escape : escape != LOCAL_DETECT ? escape : r->quote;
    r->header = o->header != LOCAL_DETECT ? o->header : header;
    return AGNES_OK;
}

/* The reader with `types` ({column: type}) applied; for JSON they must
 * name every column (read_json's `columns`), which the caller ensures. */
static void append_reader(const local_reader *r, const char *file, const json_t *types, strbuf *sql)
{
    const char *name;
    json_t *type;
    bool first = true;
    if (strcmp(r->format, "parquet") == 0) {
        strbuf_append_str(sql, "read_parquet(");
        duck_append_literal(sql, file);
        strbuf_append_char(sql, ')');
        return;
    }
    if (is_json(r->format)) {
        strbuf_append_str(sql, "read_json(");
        duck_append_literal(sql, file);
        strbuf_appendf(sql, ", format = '%s'", strcmp(r->format, "json") == 0 ? "array" : "newline_delimited");
    } else {
        strbuf_append_str(sql, "read_csv(");
        duck_append_literal(sql, file);
        strbuf_append_str(sql, ", delim = ");
        append_char_literal(sql, r->delimiter);
        strbuf_append_str(sql, ", quote = ");
        append_char_literal(sql, r->quote);
        strbuf_append_str(sql, ", escape = ");
        append_char_literal(sql, r->escape);
        strbuf_appendf(sql, ", header = %s, decimal_separator = '%c', store_rejects = true",
                       r->header ? "true" : "false", (char)r->decimal_separator);
        if (r->all_text)
            strbuf_append_str(sql, ", all_varchar = true");
    }
    if (r->sample_size != 0)
        strbuf_appendf(sql, ", sample_size = %lld", r->sample_size);
    if (types != NULL && json_object_size(types) > 0) {
        strbuf_append_str(sql, is_json(r->format) ? ", columns = {" : ", types = {");
        json_object_foreach((json_t *)types, name, type) {
            if (!first)
                strbuf_append_str(sql, ", ");
            first = false;
            duck_append_literal(sql, name);
            strbuf_append_str(sql, ": ");
            duck_append_literal(sql, json_string_value(type));
        }
        strbuf_append_char(sql, '}');
    }
    strbuf_append_char(sql, ')');
}

bool local_reader_guarded(const local_reader *reader)
{
    return json_array_size(reader->guarded) > 0;
}

static json_t *find_column(json_t *columns, const char *name);

/* How a guarded column is read: the type DuckDB inferred, and whether it
 * is a timestamp (else a DOUBLE). */
static const char *guarded_type(const local_reader *reader, const char *name, bool *timestamp)
{
    json_t *column = find_column(reader->described, name);
    const char *type = column ? json_string_value(json_object_get(column, "type")) : "DOUBLE";
    *timestamp = strncmp(type, "TIMESTAMP", 9) == 0;
    return type;
}

/* CAST(replace(replace(trim(c), '<thousands>', ''), '<decimal>', '.') AS type) AS c */
static void append_grouped(const local_reader *reader, const char *name, const char *type, strbuf *sql)
{
    char thousands[2] = {(char)reader->thousands_separator, '\0'};
    strbuf_append_str(sql, "CAST(replace(replace(trim(");
    duck_append_identifier(sql, name);
    strbuf_append_str(sql, "), ");
    duck_append_literal(sql, thousands);
    strbuf_appendf(sql, ", ''), '%c', '.') AS %s) AS ", (char)reader->decimal_separator, type);
    duck_append_identifier(sql, name);
}

void local_reader_append_select(const local_reader *reader, const char *file, strbuf *sql)
{
    if (!local_reader_guarded(reader) && json_object_size(reader->grouped) == 0) {
        strbuf_append_str(sql, "SELECT * FROM ");
        append_reader(reader, file, reader->types, sql);
        return;
    }
    json_t *types = json_deep_copy(reader->types);
    size_t i;
    json_t *name;
    json_array_foreach(reader->guarded, i, name)
        json_object_set_new(types, json_string_value(name), json_string("VARCHAR"));
    strbuf_append_str(sql, "SELECT * REPLACE (");
    bool first = true;
    const char *grouped_name;
    json_t *grouped_type;
    json_object_foreach(reader->grouped, grouped_name, grouped_type) {
        if (!first)
            strbuf_append_str(sql, ", ");
        first = false;
        append_grouped(reader, grouped_name, json_string_value(grouped_type), sql);
    }
    json_array_foreach(reader->guarded, i, name) {
        bool timestamp;
        const char *type = guarded_type(reader, json_string_value(name), &timestamp);
        bool comma = !timestamp && reader->decimal_separator == ',';
        /* Cheap tests on every row, and a false alarm (long but exact) only
         * costs the measuring pass of local_reader_widen: a DOUBLE longer
         * than 15 characters may hold more digits than it keeps; a plain
         * timestamp longer than 26 ("2024-01-01 10:00:00.123456") has more
         * than microseconds; one with a zone is matched exactly. */
        strbuf_append_str(sql, first ? "CAST(CASE WHEN " : ", CAST(CASE WHEN ");
        first = false;
        if (timestamp && strcmp(type, "TIMESTAMP") != 0) {
            strbuf_append_str(sql, "regexp_matches(");
            duck_append_identifier(sql, json_string_value(name));
            strbuf_append_str(sql, ", '[.][0-9]{7}')");
        } else {
            strbuf_append_str(sql, "length(");
            duck_append_identifier(sql, json_string_value(name));
            strbuf_appendf(sql, ") > %d", timestamp ? 26 : DOUBLE_EXACT_DIGITS);
        }
        strbuf_appendf(sql, " THEN error('" LOCAL_READER_WIDEN "') ELSE %s", comma ? "replace(" : "");
        duck_append_identifier(sql, json_string_value(name));
        strbuf_appendf(sql, "%s END AS %s) AS ", comma ? ", ',', '.')" : "", timestamp ? type : "DOUBLE");
        duck_append_identifier(sql, json_string_value(name));
    }
    strbuf_append_str(sql, ") FROM ");
    append_reader(reader, file, types, sql);
    json_decref(types);
}

/* DuckDB's message up to its first line break, with the server's spool
 * path replaced by words the caller knows, cut on a character. */
static void first_line(const char *message, const char *file, char *out, size_t out_size)
{
    size_t n = 0, file_len = strlen(file);
    const char *p = message ? message : "unknown error";
    const char *instead = "(the uploaded file)";
    while (*p != '\0' && *p != '\n' && n + 1 < out_size) {
        if (strncmp(p, file, file_len) == 0) {
            size_t k = strlen(instead) < out_size - 1 - n ? strlen(instead) : out_size - 1 - n;
            memcpy(out + n, instead, k);
            n += k;
            p += file_len;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    utf8_trim_partial(out);
}

/* Columns of the reader: [{name, type}] (new reference). */
static int describe(duckdb_connection conn, const local_reader *r, const char *file, const json_t *types,
                    json_t **columns, agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT column_name AS name, column_type AS type FROM (DESCRIBE SELECT * FROM ");
    append_reader(r, file, types, &sql);
    strbuf_append_char(&sql, ')');
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    int rc = duck_query_json(conn, sql.data, NULL, 0, columns, err);
    strbuf_free(&sql);
    if (rc != AGNES_OK) {
        char message[600];
        first_line(err->message, file, message, sizeof message);
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "The file could not be read as %s: %s. Check the file, or pass the right format "
                             "(csv, tsv, parquet, json, ndjson)%s.",
                             r->format, message,
                             is_csv(r->format) ? " and dialect (delimiter, quote, escape, header)" : "");
    }
    return rc;
}

static json_t *find_column(json_t *columns, const char *name)
{
    size_t i;
    json_t *column;
    json_array_foreach(columns, i, column)
        if (strcasecmp(json_string_value(json_object_get(column, "name")), name) == 0)
            return column;
    return NULL;
}

static void column_names(json_t *columns, char *out, size_t out_size)
{
    size_t i, n = 0;
    json_t *column;
    out[0] = '\0';
    json_array_foreach(columns, i, column) {
        int w = snprintf(out + n, out_size - n, "%s%s", i ? ", " : "", json_string_value(json_object_get(column, "name")));
        if (w < 0 || (size_t)w >= out_size - n) {
            utf8_trim_partial(out);
            return;
        }
        n += (size_t)w;
    }
}

/* Letters, digits, _, spaces, (), [] and commas: DuckDB type syntax, and
 * nothing that could end a string literal or a statement. */
static bool type_name_is_plain(const char *type)
{
    size_t len = strlen(type);
    if (len == 0 || len > TYPE_NAME_MAX || !((type[0] >= 'A' && type[0] <= 'Z') || (type[0] >= 'a' && type[0] <= 'z')))
        return false;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("_ (),[]", *p)))
            return false;
    return true;
}

/* DuckDB's own name for a type the caller wrote ("int" -> "INTEGER"), or
 * AGNES_ERR_INVALID when DuckDB does not know it. */
static int normalize_type(duckdb_connection conn, const char *column, const char *type, char *out, size_t out_size,
                          agnes_error *err)
{
    static const char examples[] = "e.g. VARCHAR, BIGINT, DOUBLE, DECIMAL(38,2), DATE, TIMESTAMP, BOOLEAN";
    if (!type_name_is_plain(type))
        return agnes_error_set(err, AGNES_ERR_INVALID, "The type given for column \"%s\" is not a type name (%s).",
                               column, examples);
    char sql[TYPE_NAME_MAX + 80];
    snprintf(sql, sizeof sql, "SELECT typeof(CAST(NULL AS %s))", type);
    duckdb_result result;
    if (duckdb_query(conn, sql, &result) != DuckDBSuccess || duckdb_row_count(&result) != 1 ||
        !duck_result_text(&result, 0, 0, out, out_size)) {
        duckdb_destroy_result(&result);
        return agnes_error_set(err, AGNES_ERR_INVALID, "Column \"%s\": \"%s\" is not a DuckDB type (%s).", column, type,
                               examples);
    }
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

static json_t *column_entry(const char *name, const char *type, const char *chosen, const char *note)
{
    json_t *entry = json_pack("{s:s, s:s, s:s}", "name", name, "type", type, "chosen", chosen);
    if (entry && note)
        json_object_set_new(entry, "note", json_string(note));
    return entry;
}

/* Parquet cannot hold 128-bit integers: DuckDB writes them as DOUBLE. */
static bool is_huge_integer(const char *type)
{
    return strcmp(type, "HUGEINT") == 0 || strcmp(type, "UHUGEINT") == 0;
}

/* The caller's types, checked against the file's columns and DuckDB. */
static int apply_given_types(duckdb_connection conn, local_reader *r, const json_t *given, json_t *described,
                             agnes_error *err)
{
    const char *name;
    json_t *type;
    json_object_foreach((json_t *)given, name, type) {
        json_t *column = find_column(described, name);
        char names[600], normalized[128];
        if (column == NULL) {
            column_names(described, names, sizeof names);
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "types names a column \"%s\" that the file does not have; its columns are: %s.",
                                   name, names);
        }
        if (!json_is_string(type))
            return agnes_error_set(err, AGNES_ERR_INVALID, "types: the type of \"%s\" must be a string such as "
                                                            "\"VARCHAR\" or \"DECIMAL(38,2)\".", name);
        int rc = normalize_type(conn, name, json_string_value(type), normalized, sizeof normalized, err);
        if (rc != AGNES_OK)
            return rc;
        const char *actual = json_string_value(json_object_get(column, "name"));
        const char *note = NULL;
        if (is_huge_integer(normalized)) {
            snprintf(normalized, sizeof normalized, "DECIMAL(38,0)");
            note = "Parquet has no 128-bit integer (it would round to DOUBLE); DECIMAL(38,0) keeps every digit";
        }
        json_object_set_new(r->types, actual, json_string(normalized));
        json_object_set_new(column, "given", json_string(normalized));
        if (note)
            json_object_set_new(column, "note", json_string(note));
    }
    return AGNES_OK;
}

/* ---- exactness of DOUBLE columns --------------------------------------- */

typedef struct digits_stats {
    bool all_plain, all_integer, fits_bigint, fits_ubigint;
    long long integer_digits, scale, significant;
} digits_stats;

/* One pass over the file: for every column in `doubles`, read as text,
 * what the widest value needs. */
static int measure_doubles(duckdb_connection conn, local_reader *r, const char *file, json_t *described,
                           json_t *doubles, digits_stats *stats, agnes_error *err)
{
    json_t *types = json_deep_copy(r->types);
    size_t i;
    json_t *name;
    if (types == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (is_json(r->format)) { /* read_json's columns: every column, as described */
        json_t *column;
        json_array_foreach(described, i, column) {
            const char *n = json_string_value(json_object_get(column, "name"));
            if (json_object_get(types, n) == NULL)
                json_object_set(types, n, json_object_get(column, "type"));
        }
    }
    json_array_foreach(doubles, i, name)
        json_object_set_new(types, json_string_value(name), json_string("VARCHAR"));
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT ");
    json_array_foreach(doubles, i, name) {
        const char *v = "v";
        strbuf_appendf(&sql,
                       "%s bool_and(%s%zu IS NULL OR regexp_full_match(%s%zu, '[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)')),"
                       " bool_and(%s%zu IS NULL OR regexp_full_match(%s%zu, '[+-]?[0-9]+')),"
                       " bool_and(%s%zu IS NULL OR TRY_CAST(%s%zu AS BIGINT) IS NOT NULL),"
                       " bool_and(%s%zu IS NULL OR TRY_CAST(%s%zu AS UBIGINT) IS NOT NULL),"
                       " max(length(ltrim(regexp_replace(split_part(%s%zu, '.', 1), '^[+-]', ''), '0'))),"
                       " max(length(split_part(%s%zu, '.', 2))),"
                       " max(length(ltrim(regexp_replace(split_part(%s%zu, '.', 1), '^[+-]', '')"
                       " || rtrim(split_part(%s%zu, '.', 2), '0'), '0')))",
                       i ? "," : "", v, i, v, i, v, i, v, i, v, i, v, i, v, i, v, i, v, i, v, i, v, i, v, i);
    }
    strbuf_append_str(&sql, " FROM (SELECT ");
    json_array_foreach(doubles, i, name) {
        strbuf_appendf(&sql, "%snullif(%strim(CAST(", i ? ", " : "", r->decimal_separator == ',' ? "replace(" : "");
        duck_append_identifier(&sql, json_string_value(name));
        strbuf_appendf(&sql, " AS VARCHAR))%s, '') AS v%zu", r->decimal_separator == ',' ? ", ',', '.')" : "", i);
    }
    strbuf_append_str(&sql, " FROM ");
    append_reader(r, file, types, &sql);
    strbuf_append_char(&sql, ')');
    json_decref(types);
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    duckdb_result result;
    int rc = AGNES_OK;
    if (duckdb_query(conn, sql.data, &result) != DuckDBSuccess) {
        char message[600];
        first_line(duckdb_result_error(&result), file, message, sizeof message);
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "The file could not be read as %s: %s. Fix the file and upload "
                                                      "it again; nothing was changed.", r->format, message);
    } else {
        for (i = 0; i < json_array_size(doubles); i++) {
            idx_t c = (idx_t)i * 7;
            stats[i] = (digits_stats){
                .all_plain = duckdb_value_boolean(&result, c, 0) || duckdb_value_is_null(&result, c, 0),
                .all_integer = duckdb_value_boolean(&result, c + 1, 0) || duckdb_value_is_null(&result, c + 1, 0),
                .fits_bigint = duckdb_value_boolean(&result, c + 2, 0) || duckdb_value_is_null(&result, c + 2, 0),
                .fits_ubigint = duckdb_value_boolean(&result, c + 3, 0) || duckdb_value_is_null(&result, c + 3, 0),
                .integer_digits = duckdb_value_int64(&result, c + 4, 0),
                .scale = duckdb_value_int64(&result, c + 5, 0),
                .significant = duckdb_value_int64(&result, c + 6, 0),
            };
        }
    }
    duckdb_destroy_result(&result);
    strbuf_free(&sql);
    return rc;
}

/* The exact type for a column inferred DOUBLE, or NULL to keep DOUBLE. */
static const char *exact_type(const digits_stats *s, char *buf, size_t size, char *note, size_t note_size)
{
    if (!s->all_plain || s->significant <= DOUBLE_EXACT_DIGITS)
        return NULL; /* exponents, inf/nan: a floating column by nature; or DOUBLE is exact */
    snprintf(note, note_size,
             "values have up to %lld significant digits; a DOUBLE keeps %d, so it would round them", s->significant,
             DOUBLE_EXACT_DIGITS);
    if (s->all_integer && s->fits_bigint)
        return "BIGINT";
    if (s->all_integer && s->fits_ubigint)
        return "UBIGINT";
    if (s->integer_digits + s->scale <= 38) {
        snprintf(buf, size, "DECIMAL(38,%lld)", s->all_integer ? 0LL : s->scale);
        return buf;
    }
    snprintf(note, note_size, "values have more digits (%lld) than DECIMAL(38) holds; kept as text so none is lost",
             s->integer_digits + s->scale);
    return "VARCHAR";
}

/* Record that column `name` is read as `type` because of `note`. */
static void set_widened(local_reader *r, const char *name, const char *type, const char *note)
{
    size_t j;
    json_t *entry;
    json_object_set_new(r->types, name, json_string(type));
    json_array_foreach(r->columns, j, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "name")), name) != 0)
            continue;
        json_object_set_new(entry, "type", json_string(type));
        json_object_set_new(entry, "chosen", json_string("widened"));
        json_object_set_new(entry, "note", json_string(note));
    }
}

/* The most fractional-second digits of each timestamp column in `names`,
 * read as text over the whole file. */
static int measure_timestamps(duckdb_connection conn, local_reader *r, const char *file, json_t *names,
                              long long *digits, agnes_error *err)
{
    json_t *types = json_deep_copy(r->types);
    size_t i;
    json_t *name;
    if (types == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    json_array_foreach(names, i, name)
        json_object_set_new(types, json_string_value(name), json_string("VARCHAR"));
    if (is_json(r->format)) { /* read_json's columns: every column */
        json_t *column;
        json_array_foreach(r->described, i, column) {
            const char *n = json_string_value(json_object_get(column, "name"));
            if (json_object_get(types, n) == NULL)
                json_object_set(types, n, json_object_get(column, "type"));
        }
    }
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT ");
    json_array_foreach(names, i, name) {
        strbuf_append_str(&sql, i ? ", max(length(regexp_extract(" : "max(length(regexp_extract(");
        duck_append_identifier(&sql, json_string_value(name));
        strbuf_append_str(&sql, ", '[.]([0-9]+)', 1)))");
    }
    strbuf_append_str(&sql, " FROM ");
    append_reader(r, file, types, &sql);
    json_decref(types);
    duckdb_result result;
    int rc = AGNES_OK;
    if (strbuf_failed(&sql)) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    } else if (duckdb_query(conn, sql.data, &result) != DuckDBSuccess) {
        char message[600];
        first_line(duckdb_result_error(&result), file, message, sizeof message);
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "The file could not be read as %s: %s. Fix the file and upload "
                                                      "it again; nothing was changed.", r->format, message);
        duckdb_destroy_result(&result);
    } else {
        for (i = 0; i < json_array_size(names); i++)
            digits[i] = duckdb_value_int64(&result, (idx_t)i, 0);
        duckdb_destroy_result(&result);
    }
    strbuf_free(&sql);
    return rc;
}

int local_reader_widen(duckdb_connection conn, local_reader *r, const char *file, agnes_error *err)
{
    json_t *doubles = json_array(), *timestamps = json_array(), *name;
    size_t i, count = json_array_size(r->guarded);
    digits_stats *stats = calloc(count + 1, sizeof *stats);
    long long *fractions = calloc(count + 1, sizeof *fractions);
    int rc = AGNES_OK;
    if (doubles == NULL || timestamps == NULL || stats == NULL || fractions == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    json_array_foreach(r->guarded, i, name) {
        bool timestamp;
        guarded_type(r, json_string_value(name), &timestamp);
        json_array_append(timestamp ? timestamps : doubles, name);
    }
    if (json_array_size(doubles) > 0 && (rc = measure_doubles(conn, r, file, r->described, doubles, stats, err)))
        goto done;
    if (json_array_size(timestamps) > 0 && (rc = measure_timestamps(conn, r, file, timestamps, fractions, err)))
        goto done;
    json_array_foreach(doubles, i, name) {
        char buf[32], note[200];
        const char *type = exact_type(&stats[i], buf, sizeof buf, note, sizeof note);
        if (type != NULL)
            set_widened(r, json_string_value(name), type, note);
        else if (is_json(r->format)) /* read_json's columns name every column */
            json_object_set_new(r->types, json_string_value(name), json_string("DOUBLE"));
    }
    json_array_foreach(timestamps, i, name) {
        bool timestamp;
        const char *type = guarded_type(r, json_string_value(name), &timestamp);
        char note[200];
        snprintf(note, sizeof note, "values have %lld digits of a second; a %s keeps 6 (microseconds)%s",
                 fractions[i], type, strcmp(type, "TIMESTAMP") == 0 && fractions[i] <= 9 ? "" : ", so kept as text");
        if (fractions[i] > 6)
            set_widened(r, json_string_value(name),
                        strcmp(type, "TIMESTAMP") == 0 && fractions[i] <= 9 ? "TIMESTAMP_NS" : "VARCHAR", note);
        else if (is_json(r->format))
            json_object_set_new(r->types, json_string_value(name), json_string(type));
    }
    json_array_clear(r->guarded);
done:
    free(stats);
    free(fractions);
    json_decref(doubles);
    json_decref(timestamps);
    return rc;
}

/* Columns whose inferred type may change a value - DOUBLE (digits),
 * TIMESTAMP (digits of a second past microseconds) - and that the caller
 * did not type: read as text and checked as they are converted. */
static int guard_columns(local_reader *r, json_t *described, agnes_error *err)
{
    static const char *const guarded_types[] = {"DOUBLE", "FLOAT", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"};
    size_t i;
    json_t *column;
    json_array_foreach(described, i, column) {
        const char *type = json_string_value(json_object_get(column, "type"));
        bool guard = false;
        for (size_t t = 0; t < sizeof guarded_types / sizeof guarded_types[0]; t++)
            guard = guard || strcmp(type, guarded_types[t]) == 0;
        if (guard && json_object_get(column, "given") == NULL &&
            json_array_append(r->guarded, json_object_get(column, "name")) != 0)
            return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    return AGNES_OK;
}

/* ---- JSON numbers that a double cannot hold ---------------------------- */

/* ---- thousands separators --------------------------------------------- */

static bool is_number_type(const char *type)
{
    static const char *const prefixes[] = {"DECIMAL", "NUMERIC", "DOUBLE", "FLOAT", "REAL", "TINYINT", "SMALLINT",
                                           "INTEGER", "INT", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
                                           "UBIGINT"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(type, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* A grouped number: [+-]? then d{1,3}(<T>ddd)* or plain digits, then an
 * optional <D>digits.  As a regular expression for regexp_full_match. */
static void grouped_pattern(const local_reader *r, char *out, size_t size)
{
    char t = (char)r->thousands_separator, d = (char)r->decimal_separator;
    snprintf(out, size, "[+-]?([0-9]{1,3}([%c][0-9]{3})*|[0-9]+)([%c][0-9]+)?", t, d);
}

/* With a thousands separator: columns the caller typed as numbers are read
 * as text and cast once stripped; text columns whose every value is a
 * grouped number (at least one with a separator) become BIGINT or
 * DECIMAL(38,s) the same way, measured over the whole file. */
static int plan_grouped(duckdb_connection conn, local_reader *r, const char *file, json_t *described,
                        agnes_error *err)
{
    if (r->thousands_separator == 0 || r->all_text)
        return AGNES_OK;
    json_t *candidates = json_array();
    size_t i;
    json_t *column;
    json_array_foreach(described, i, column) {
        const char *name = json_string_value(json_object_get(column, "name"));
        const char *given = json_string_value(json_object_get(column, "given"));
        const char *type = json_string_value(json_object_get(column, "type"));
        if (given != NULL && is_number_type(given)) {
            json_object_set_new(r->grouped, name, json_string(given));
            json_object_set_new(r->types, name, json_string("VARCHAR"));
        } else if (given == NULL && strcmp(type, "VARCHAR") == 0) {
            json_array_append(candidates, json_object_get(column, "name"));
        }
    }
    int rc = AGNES_OK;
    json_t *rows = NULL;
    if (json_array_size(candidates) == 0)
        goto done;
    char pattern[128], thousands[2] = {(char)r->thousands_separator, '\0'}, decimal[2] = {(char)r->decimal_separator, '\0'};
    grouped_pattern(r, pattern, sizeof pattern);
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT ");
    json_t *name;
    json_array_foreach(candidates, i, name) {
        strbuf v;
        strbuf_init(&v);
        strbuf_append_str(&v, "nullif(trim(");
        duck_append_identifier(&v, json_string_value(name));
        strbuf_append_str(&v, "), '')");
        const char *value = v.data ? v.data : "NULL";
        strbuf_appendf(&sql, "%scount(%s) FILTER (WHERE NOT regexp_full_match(%s, ", i ? ", " : "", value, value);
        duck_append_literal(&sql, pattern);
        strbuf_appendf(&sql, ")) AS bad%zu, count(%s) FILTER (WHERE contains(%s, ", i, value, value);
        duck_append_literal(&sql, thousands);
        strbuf_appendf(&sql, ")) AS grouped%zu, coalesce(max(length(split_part(%s, ", i, value);
        duck_append_literal(&sql, decimal);
        strbuf_appendf(&sql, ", 2))), 0) AS scale%zu, coalesce(max(length(regexp_replace(split_part(%s, ", i, value);
        duck_append_literal(&sql, decimal);
        strbuf_appendf(&sql, ", 1), '[^0-9]', '', 'g'))), 0) AS digits%zu", i);
        strbuf_free(&v);
    }
    strbuf_append_str(&sql, " FROM ");
    append_reader(r, file, r->types, &sql);
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = duck_query_json(conn, sql.data, NULL, 0, &rows, err);
    strbuf_free(&sql);
    if (rc != AGNES_OK) {
        rc = agnes_error_wrap(err, "measuring the columns written with thousands separators");
        goto done;
    }
    json_t *row = json_array_get(rows, 0);
    json_array_foreach(candidates, i, name) {
        char key[32];
        snprintf(key, sizeof key, "bad%zu", i);
        long long bad = json_integer_value(json_object_get(row, key));
        snprintf(key, sizeof key, "grouped%zu", i);
        long long grouped = json_integer_value(json_object_get(row, key));
        snprintf(key, sizeof key, "scale%zu", i);
        long long scale = json_integer_value(json_object_get(row, key));
        snprintf(key, sizeof key, "digits%zu", i);
        long long digits = json_integer_value(json_object_get(row, key));
        if (bad > 0 || grouped == 0)
            continue;
        char type[32];
        if (scale == 0 && digits <= 18)
            snprintf(type, sizeof type, "BIGINT");
        else if (scale <= 38 && digits <= 38 - scale)
            snprintf(type, sizeof type, "DECIMAL(38,%lld)", scale);
        else
            continue;
        const char *column_name = json_string_value(name);
        json_object_set_new(r->grouped, column_name, json_string(type));
        json_object_set_new(r->types, column_name, json_string("VARCHAR"));
        json_t *described_column = find_column(described, column_name);
        json_object_set_new(described_column, "type", json_string(type));
        char note[160];
        snprintf(note, sizeof note, "numbers written with '%c' between thousands and '%c' before decimals",
                 r->thousands_separator, r->decimal_separator);
        json_object_set_new(described_column, "note", json_string(note));
    }
done:
    json_decref(rows);
    json_decref(candidates);
    return rc;
}

const char *local_reader_conversion_hint(const local_reader *reader, const char *column, const char *message)
{
    if (message == NULL || (strstr(message, "onvert") == NULL && strstr(message, "ast") == NULL))
        return "";
    json_t *entry = column ? find_column(reader->columns, column) : NULL;
    const char *chosen = entry ? json_string_value(json_object_get(entry, "chosen")) : NULL;
    if (chosen != NULL && strcmp(chosen, "given") == 0)
        return " That column has the type you gave in types: fix the value, give the column another type (or "
               "VARCHAR), or, if numbers are written with thousands separators (1.234,50), pass "
               "thousands_separator=. (or , ' and space) with decimal_separator.";
    if (column == NULL && json_object_size(reader->grouped) > 0)
        return " A column read with thousands_separator holds a value that is not a number written that way: fix "
               "the value, or give the column the type VARCHAR in types.";
    if (column == NULL && reader->given_types)
        return " If the value is in a column whose type you gave in types, fix the value or that type; otherwise "
               "column types were inferred from the first rows: pass sample_size=-1 to look at every row, "
               "types={\"<column>\": \"VARCHAR\"} to fix one column, or all_text=true.";
    return " Column types were inferred from the first rows: pass sample_size=-1 to look at every row, "
           "types={\"<column>\": \"VARCHAR\"} to fix one column, or all_text=true.";
}

/* ---- the plan ---------------------------------------------------------- */

static int plan_dialect(duckdb_connection conn, const char *file, const local_read_options *o, local_reader *r,
                        agnes_error *err)
{
    local_head head;
    int rc = local_head_read(file, &head, err);
    if (rc != AGNES_OK)
        return rc;
    if (o->delimiter != LOCAL_DETECT)
        r->delimiter = o->delimiter;
    else if (strcmp(r->format, "tsv") == 0)
        r->delimiter = '\t';
    else if ((r->delimiter = local_sniff_delimiter(&head, o->quote == LOCAL_DETECT ? '"' : o->quote)) == 0)
        r->delimiter = ','; /* one column */
    rc = sniff(conn, file, r, o, err);
    if (rc == AGNES_OK) {
        int thousands = 0;
        int decimal = local_sniff_number_format(&head, r->delimiter, r->quote, &thousands);
        r->decimal_separator = o->decimal_separator != LOCAL_DETECT ? o->decimal_separator : decimal;
        if (o->thousands_separator != LOCAL_DETECT)
            r->thousands_separator = o->thousands_separator;
        else if (thousands != r->decimal_separator) /* detected for this decimal separator only */
            r->thousands_separator = thousands;
        if (r->thousands_separator != 0 && r->thousands_separator == r->decimal_separator)
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "thousands_separator and decimal_separator are both '%c'; numbers like 1.234,50 "
                                 "take thousands_separator=. and decimal_separator=, (or leave both to detection).",
                                 r->decimal_separator);
    }
    local_head_free(&head);
    return rc;
}

/* A one-column CSV whose header holds another delimiter was split wrong. */
static int check_one_column(const local_reader *r, json_t *described, agnes_error *err)
{
    if (json_array_size(described) != 1 || !r->header)
        return AGNES_OK;
    const char *name = json_string_value(json_object_get(json_array_get(described, 0), "name"));
    static const struct {
        char c;
        const char *param;
    } spelled[] = {{',', "%2C"}, {';', "%3B"}, {'\t', "tab"}, {'|', "%7C"}};
    for (size_t i = 0; i < sizeof spelled / sizeof spelled[0]; i++)
        if (spelled[i].c != (char)r->delimiter && strchr(name, spelled[i].c) != NULL)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "The file was read as one column named \"%.200s\": its header holds '%s', which "
                                   "looks like the real delimiter. Pass ?delimiter=%s (or fix the file); nothing was "
                                   "changed.",
                                   name, spelled[i].c == '\t' ? "\\t" : (char[2]){spelled[i].c, '\0'}, spelled[i].param);
    return AGNES_OK;
}

int local_reader_plan(duckdb_connection conn, const char *format, const char *file,
                      const local_read_options *options, local_reader *out, agnes_error *err)
{
    json_t *described = NULL;
    int rc = AGNES_OK;
    memset(out, 0, sizeof *out);
    snprintf(out->format, sizeof out->format, "%s", format);
    out->sample_size = options->sample_size;
    out->all_text = options->all_text;
    out->given = json_array();
    out->types = json_object();
    out->columns = json_array();
    out->guarded = json_array();
    out->delimiter = ',';
    out->quote = '"';
    out->escape = '"';
    out->header = 1;
    out->decimal_separator = '.';
    out->grouped = json_object();
    out->given_types = options->types != NULL && json_object_size(options->types) > 0;
    if (out->grouped == NULL || out->given == NULL || out->types == NULL || out->columns == NULL || out->guarded == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    static const char *const fields[] = {"delimiter", "quote", "escape", "header", "decimal_separator",
                                         "thousands_separator"};
    const int values[] = {options->delimiter, options->quote, options->escape, options->header,
                          options->decimal_separator, options->thousands_separator};
    for (size_t i = 0; i < 6; i++)
        if (values[i] != LOCAL_DETECT)
            json_array_append_new(out->given, json_string(fields[i]));
    bool dialect_given = json_array_size(out->given) > 0;
    bool typed = options->types != NULL || options->all_text || options->sample_size != 0;
    if (!is_csv(format) && dialect_given) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "delimiter, quote, escape, header, decimal_separator and thousands_separator are for csv and tsv files; "
                             "this one is %s. Leave them out, or pass format=csv.", format);
        goto done;
    }
    if (strcmp(format, "parquet") == 0 && typed) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "A Parquet file carries its own column types: types, all_text and sample_size are for "
                             "csv, tsv, json and ndjson. Leave them out.");
        goto done;
    }
    if (is_csv(format) && (rc = plan_dialect(conn, file, options, out, err)) != AGNES_OK)
        goto done;
    if (is_json(format) && !options->all_text && (rc = local_sniff_json_numbers(file, format, err)) != AGNES_OK)
        goto done;
    if ((rc = describe(conn, out, file, NULL, &described, err)) != AGNES_OK)
        goto done;
    if (is_csv(format) && (rc = check_one_column(out, described, err)) != AGNES_OK)
        goto done;
    if (options->all_text && is_json(format)) { /* read_json has no all_varchar: name every column */
        size_t i;
        json_t *column;
        json_array_foreach(described, i, column)
            json_object_set_new(out->types, json_string_value(json_object_get(column, "name")), json_string("VARCHAR"));
    }
    if (options->types != NULL && !options->all_text &&
        (rc = apply_given_types(conn, out, options->types, described, err)) != AGNES_OK)
        goto done;
    if (is_csv(format) && (rc = plan_grouped(conn, out, file, described, err)) != AGNES_OK)
        goto done;
    if (!options->all_text && strcmp(format, "parquet") != 0 && (rc = guard_columns(out, described, err)) != AGNES_OK)
        goto done;
    if (is_json(format) && (json_object_size(out->types) > 0 || json_array_size(out->guarded) > 0)) {
        /* read_json's columns name them all */
        size_t i;
        json_t *column;
        json_array_foreach(described, i, column) {
            const char *name = json_string_value(json_object_get(column, "name"));
            if (json_object_get(out->types, name) == NULL)
                json_object_set(out->types, name, json_object_get(column, "type"));
        }
    }
    size_t i;
    json_t *column;
    json_array_foreach(described, i, column) {
        const char *name = json_string_value(json_object_get(column, "name"));
        const char *type = json_string_value(json_object_get(column, "type"));
        const char *note = json_string_value(json_object_get(column, "note"));
        const char *given = json_string_value(json_object_get(column, "given"));
        bool huge = !options->all_text && given == NULL && is_huge_integer(type);
        json_t *entry = options->all_text ? column_entry(name, "VARCHAR", "text", NULL)
                        : given != NULL   ? column_entry(name, given, "given", note)
                        : huge            ? column_entry(name, "DECIMAL(38,0)", "widened",
                                                         "Parquet has no 128-bit integer; DECIMAL(38,0) keeps every digit")
                                          : column_entry(name, type, "detected", note);
        if (entry && huge)
            json_object_set_new(out->types, name, json_string("DECIMAL(38,0)"));
        if (entry == NULL || json_array_append_new(out->columns, entry) != 0) {
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
done:
    out->described = described;
    if (rc != AGNES_OK)
        local_reader_free(out);
    return rc;
}

static json_t *char_json(int c)
{
    char text[2] = {(char)c, '\0'};
    return c > 0 ? json_string(text) : json_null();
}

json_t *local_reader_dialect_json(const local_reader *reader)
{
    if (!is_csv(reader->format))
        return NULL;
    return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:O}", "delimiter", char_json(reader->delimiter), "quote",
                     char_json(reader->quote), "escape", char_json(reader->escape), "header", reader->header == 1,
                     "decimal_separator", char_json(reader->decimal_separator), "thousands_separator",
                     char_json(reader->thousands_separator), "given", reader->given);
}
