#include "engine/postgres_types.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/duck.h"

enum value_kind {
    KIND_CAST,     /* col::text in PostgreSQL, CAST(c AS type) in DuckDB */
    KIND_VARCHAR,  /* col::text, kept as text */
    KIND_BYTEA,    /* encode(col, 'hex'), unhex(c) */
    KIND_INTERVAL, /* replace(col::text, '+', ''): text that CAST(x AS INTERVAL) reads */
    KIND_ARRAY,    /* to_json(col)::text, from_json_strict(c, '[["<element>"]]') as deep as the data */
    KIND_JSON_TEXT, /* to_json(col)::text, kept as JSON: arrays of different depths in one column */
    KIND_UNBOUNDED_NUMERIC, /* numeric without a typmod that fits DuckDB: col::text, typed once measured */
};

/* duckdb_type of an array column: its element type and one [] per dimension. */
static void set_array_type(postgres_column *column, int dims)
{
    column->array_dims = dims;
    size_t len = (size_t)snprintf(column->duckdb_type, sizeof column->duckdb_type, "%s", column->element_type);
    for (int i = 0; i < dims && len + 2 < sizeof column->duckdb_type; i++)
        len += (size_t)snprintf(column->duckdb_type + len, sizeof column->duckdb_type - len, "[]");
}

/* DuckDB type and travel kind of a scalar PostgreSQL type. */
static enum value_kind map_scalar(const char *name, int typmod, char *duckdb_type, size_t size)
{
    static const struct {
        const char *pg;
        const char *duckdb;
        enum value_kind kind;
    } table[] = {
        {"int2", "SMALLINT", KIND_CAST},         {"int4", "INTEGER", KIND_CAST},
        {"int8", "BIGINT", KIND_CAST},           {"oid", "BIGINT", KIND_CAST},
        {"float4", "FLOAT", KIND_CAST},          {"float8", "DOUBLE", KIND_CAST},
        {"bool", "BOOLEAN", KIND_CAST},          {"date", "DATE", KIND_CAST},
        {"timestamp", "TIMESTAMP", KIND_CAST},   {"timestamptz", "TIMESTAMPTZ", KIND_CAST},
        {"time", "TIME", KIND_CAST},             {"timetz", "TIMETZ", KIND_CAST},
        {"interval", "VARCHAR", KIND_INTERVAL}, {"json", "JSON", KIND_CAST},
        {"jsonb", "JSON", KIND_CAST},            {"uuid", "UUID", KIND_CAST},
        {"bytea", "BLOB", KIND_BYTEA},
    };
    if (strcmp(name, "numeric") == 0) {
        int precision = typmod >= 4 ? ((typmod - 4) >> 16) & 0xFFFF : 0;
        int scale = typmod >= 4 ? (typmod - 4) & 0xFFFF : 0;
        if (precision >= 1 && precision <= 38 && scale <= precision) {
            snprintf(duckdb_type, size, "DECIMAL(%d,%d)", precision, scale);
            return KIND_CAST;
        }
        /* No typmod (or wider than DuckDB's 38 digits): the type is decided
         * by measuring the data (postgres_settle_numerics); until then it
         * is its exact text, never a DOUBLE that rounds. */
        snprintf(duckdb_type, size, "VARCHAR");
        return KIND_UNBOUNDED_NUMERIC;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].pg) == 0) {
            snprintf(duckdb_type, size, "%s", table[i].duckdb);
            return table[i].kind;
        }
    }
    snprintf(duckdb_type, size, "VARCHAR");
    return KIND_VARCHAR;
}

/* Fill pg_type, duckdb_type and kind of one described column. */
static int type_of(PGconn *conn, Oid oid, int typmod, postgres_column *column, agnes_error *err)
{
    char oid_text[16], typmod_text[16];
    snprintf(oid_text, sizeof oid_text, "%u", oid);
    snprintf(typmod_text, sizeof typmod_text, "%d", typmod);
    const char *params[] = {oid_text, typmod_text};
    PGresult *res = PQexecParams(conn,
                                 "SELECT format_type(t.oid, $2::int), t.typname, t.typcategory::text,"
                                 " coalesce(e.typname, '') FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem"
                                 " WHERE t.oid = $1::oid",
                                 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot look up PostgreSQL type %u: %s", oid,
                                 PQresultErrorMessage(res));
        PQclear(res);
        return rc;
    }
    snprintf(column->pg_type, sizeof column->pg_type, "%s", PQgetvalue(res, 0, 0));
    const char *element = PQgetvalue(res, 0, 3);
    if (strcmp(PQgetvalue(res, 0, 2), "A") == 0 && element[0] != '\0') {
        char inner[100];
        enum value_kind inner_kind = map_scalar(element, typmod, inner, sizeof inner);
        /* Elements that do not survive JSON as themselves stay text; so do
         * numerics, whose NaN travels as a JSON string. */
        if (inner_kind != KIND_CAST || strcmp(inner, "JSON") == 0 || strncmp(inner, "DECIMAL", 7) == 0)
            snprintf(inner, sizeof inner, "VARCHAR");
        snprintf(column->element_type, sizeof column->element_type, "%s", inner);
        set_array_type(column, 1);
        column->kind = KIND_ARRAY;
    } else {
        column->kind = map_scalar(PQgetvalue(res, 0, 1), typmod, column->duckdb_type, sizeof column->duckdb_type);
        column->bounded_numeric = strcmp(PQgetvalue(res, 0, 1), "numeric") == 0 &&
                                  strncmp(column->duckdb_type, "DECIMAL", 7) == 0;
        column->guard_scale = -1;
    }
    PQclear(res);
    return AGNES_OK;
}

int postgres_describe(PGconn *conn, const char *sql, postgres_column **columns, size_t *count, agnes_error *err)
{
    *columns = NULL;
    *count = 0;
    PGresult *res = PQprepare(conn, "", sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        int rc = agnes_error_set(err, AGNES_ERR_INVALID, "PostgreSQL refused the query: %s",
                                 PQresultErrorMessage(res));
        PQclear(res);
        return rc;
    }
    PQclear(res);
    res = PQdescribePrepared(conn, "");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot describe the query: %s", PQresultErrorMessage(res));
        PQclear(res);
        return rc;
    }
    int n = PQnfields(res);
    if (n == 0) {
        PQclear(res);
        return agnes_error_set(err, AGNES_ERR_INVALID, "the query returns no columns; use a SELECT that returns rows");
    }
    postgres_column *out = calloc((size_t)n, sizeof *out);
    for (int i = 0; out != NULL && i < n; i++)
        out[i].guard_scale = -1;
    if (out == NULL) {
        PQclear(res);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    int rc = AGNES_OK;
    for (int i = 0; i < n && rc == AGNES_OK; i++) {
        snprintf(out[i].name, sizeof out[i].name, "%s", PQfname(res, i));
        rc = type_of(conn, PQftype(res, i), PQfmod(res, i), &out[i], err);
    }
    PQclear(res);
    if (rc != AGNES_OK) {
        free(out);
        return rc;
    }
    *columns = out;
    *count = (size_t)n;
    return AGNES_OK;
}

/* SELECT <one aggregate per chosen column> FROM (<sql>) AS agnes_source;
 * run it and hand back the single row. */
static PGresult *aggregate(PGconn *conn, const char *sql, const postgres_column *columns, size_t count,
                           bool (*chosen)(const postgres_column *), const char *template, agnes_error *err)
{
    strbuf query;
    strbuf_init(&query);
    strbuf_append_str(&query, "SELECT ");
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        if (!chosen(&columns[i]))
            continue;
        strbuf name;
        strbuf_init(&name);
        strbuf_append_str(&name, "agnes_source.");
        duck_append_identifier(&name, columns[i].name);
        if (used++ > 0)
            strbuf_append_str(&query, ", ");
        strbuf_appendf(&query, template, name.data ? name.data : "NULL", name.data ? name.data : "NULL");
        strbuf_free(&name);
    }
    strbuf_appendf(&query, " FROM (%s) AS agnes_source", sql);
    PGresult *res = NULL;
    if (strbuf_failed(&query)) {
        agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    } else {
        res = PQexec(conn, query.data);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            agnes_error_set(err, AGNES_ERR_DB, "PostgreSQL could not inspect the data: %s", PQresultErrorMessage(res));
            PQclear(res);
            res = NULL;
        }
    }
    strbuf_free(&query);
    return res;
}

static bool is_array(const postgres_column *column)
{
    return column->kind == KIND_ARRAY;
}

static bool is_bounded_numeric(const postgres_column *column)
{
    return column->kind == KIND_CAST && column->bounded_numeric;
}

int postgres_settle_arrays(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                           agnes_error *err)
{
    size_t arrays = 0;
    for (size_t i = 0; i < count; i++)
        arrays += is_array(&columns[i]);
    if (arrays == 0)
        return AGNES_OK;
    /* min and max depth as one "min:max" text per column ("" when no value has elements). */
    PGresult *res = aggregate(conn, sql, columns, count, is_array,
                              "coalesce(min(array_ndims(%s))::text || ':' || max(array_ndims(%s))::text, '')", err);
    if (res == NULL)
        return err->code;
    int field = 0;
    for (size_t i = 0; i < count; i++) {
        if (!is_array(&columns[i]))
            continue;
        int low = 0, high = 0;
        if (sscanf(PQgetvalue(res, 0, field++), "%d:%d", &low, &high) != 2 || high < 1)
            continue; /* no values with elements: one dimension, as declared */
        if (low == high && high <= 6) {
            set_array_type(&columns[i], high);
        } else {
            columns[i].kind = KIND_JSON_TEXT;
            columns[i].array_dims = 0;
            snprintf(columns[i].duckdb_type, sizeof columns[i].duckdb_type, "JSON");
            if (notes != NULL)
                json_array_append_new(notes, json_sprintf("column %s holds arrays of %d to %d dimensions, which no "
                                                          "one list type can hold: kept as JSON text",
                                                          columns[i].name, low, high));
        }
    }
    PQclear(res);
    return AGNES_OK;
}

static bool is_unbounded_numeric(const postgres_column *column)
{
    return column->kind == KIND_UNBOUNDED_NUMERIC;
}

int postgres_settle_numerics(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                             agnes_error *err)
{
    size_t unbounded = 0;
    for (size_t i = 0; i < count; i++)
        unbounded += is_unbounded_numeric(&columns[i]);
    if (unbounded == 0)
        return AGNES_OK;
    /* "<values>:<max scale>:<max integer digits>:<any non-finite>" per column.
     * scale() and trunc() are exact on numeric; the text test works on every
     * PostgreSQL version ('Infinity'::numeric needs 14). */
    PGresult *res = aggregate(conn, sql, columns, count, is_unbounded_numeric,
                              "count(%1$s)::text || ':' || coalesce(max(scale(%1$s)) FILTER (WHERE %1$s::text NOT IN "
                              "('NaN', 'Infinity', '-Infinity')), 0)::text || ':' || coalesce(max(length(trunc(abs(%1$s))"
                              "::text)) FILTER (WHERE %1$s::text NOT IN ('NaN', 'Infinity', '-Infinity')), 0)::text || ':'"
                              " || coalesce(bool_or(%1$s::text IN ('NaN', 'Infinity', '-Infinity')), false)::text",
                              err);
    if (res == NULL)
        return err->code;
    int field = 0;
    for (size_t i = 0; i < count; i++) {
        if (!is_unbounded_numeric(&columns[i]))
            continue;
        long long values = 0;
        int scale = 0, digits = 0;
        char nonfinite[8] = "";
        const char *why = NULL;
        if (sscanf(PQgetvalue(res, 0, field++), "%lld:%d:%d:%7s", &values, &scale, &digits, nonfinite) != 4)
            why = "its values could not be measured";
        else if (values == 0)
            why = "it holds no values to measure a scale from";
        else if (strcmp(nonfinite, "true") == 0)
            why = "it holds NaN or Infinity, which DECIMAL cannot";
        else if (scale > 38 || digits > 38 - scale)
            why = "its values need more than the 38 digits DECIMAL holds";
        if (why == NULL) {
            snprintf(columns[i].duckdb_type, sizeof columns[i].duckdb_type, "DECIMAL(38,%d)", scale);
            columns[i].kind = KIND_CAST;
            columns[i].bounded_numeric = true;
            columns[i].guard_scale = scale;
            if (notes != NULL)
                json_array_append_new(notes, json_sprintf("column %s (%s, no precision) synced as DECIMAL(38,%d): "
                                                          "its values have at most %d decimal places and %d integer "
                                                          "digits, so every digit is kept",
                                                          columns[i].name, columns[i].pg_type, scale, scale, digits));
        } else {
            columns[i].kind = KIND_VARCHAR;
            snprintf(columns[i].duckdb_type, sizeof columns[i].duckdb_type, "VARCHAR");
            if (notes != NULL)
                json_array_append_new(notes, json_sprintf("column %s (%s) synced as exact text (VARCHAR) because %s; "
                                                          "CAST it in queries, or give the column a precision in "
                                                          "PostgreSQL (numeric(p,s), p <= 38) to get DECIMAL",
                                                          columns[i].name, columns[i].pg_type, why));
        }
    }
    PQclear(res);
    return AGNES_OK;
}

int postgres_find_nonfinite(PGconn *conn, const char *sql, postgres_column *columns, size_t count, json_t *notes,
                            int *changed, agnes_error *err)
{
    *changed = 0;
    size_t bounded = 0;
    for (size_t i = 0; i < count; i++)
        bounded += is_bounded_numeric(&columns[i]);
    if (bounded == 0)
        return AGNES_OK;
    /* ::text compares on every PostgreSQL version ('Infinity'::numeric needs 14). */
    PGresult *res = aggregate(conn, sql, columns, count, is_bounded_numeric,
                              "coalesce(bool_or(%s::text IN ('NaN', 'Infinity', '-Infinity')), false)::text", err);
    if (res == NULL)
        return err->code;
    int field = 0;
    for (size_t i = 0; i < count; i++) {
        if (!is_bounded_numeric(&columns[i]))
            continue;
        if (strcmp(PQgetvalue(res, 0, field++), "true") != 0)
            continue;
        if (notes != NULL)
            json_array_append_new(notes, json_sprintf("column %s (%s) holds NaN or Infinity, which %s cannot: synced "
                                                      "as DOUBLE, which keeps them",
                                                      columns[i].name, columns[i].pg_type, columns[i].duckdb_type));
        snprintf(columns[i].duckdb_type, sizeof columns[i].duckdb_type, "DOUBLE");
        columns[i].bounded_numeric = false;
        (*changed)++;
    }
    PQclear(res);
    return AGNES_OK;
}

void postgres_append_text_select(strbuf *out, const char *sql, const postgres_column *columns, size_t count)
{
    strbuf_append_str(out, "SELECT ");
    for (size_t i = 0; i < count; i++) {
        strbuf sql_name;
        strbuf_init(&sql_name);
        strbuf_append_str(&sql_name, "agnes_source.");
        duck_append_identifier(&sql_name, columns[i].name);
        const char *col = strbuf_failed(&sql_name) ? "NULL" : sql_name.data;
        if (i > 0)
            strbuf_append_str(out, ", ");
        switch (columns[i].kind) {
        case KIND_BYTEA:
            strbuf_appendf(out, "encode(%s, 'hex')", col);
            break;
        case KIND_INTERVAL:
            strbuf_appendf(out, "replace(%s::text, '+', '')", col);
            break;
        case KIND_ARRAY:
        case KIND_JSON_TEXT:
            strbuf_appendf(out, "to_json(%s)::text", col);
            break;
        default:
            strbuf_appendf(out, "%s::text", col);
        }
        strbuf_free(&sql_name);
    }
    strbuf_appendf(out, " FROM (%s) AS agnes_source", sql);
}

void postgres_append_typed_columns(strbuf *out, const postgres_column *columns, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            strbuf_append_str(out, ", ");
        switch (columns[i].kind) {
        case KIND_BYTEA:
            strbuf_appendf(out, "unhex(c%zu)", i);
            break;
        case KIND_VARCHAR:
            strbuf_appendf(out, "c%zu", i);
            break;
        case KIND_ARRAY: { /* strict: a value deeper than the type is an error, never a list of NULLs */
            strbuf_appendf(out, "from_json_strict(c%zu, '", i);
            for (int d = 0; d < columns[i].array_dims; d++)
                strbuf_append_char(out, '[');
            strbuf_appendf(out, "\"%s\"", columns[i].element_type);
            for (int d = 0; d < columns[i].array_dims; d++)
                strbuf_append_char(out, ']');
            strbuf_append_str(out, "')");
            break;
        }
        case KIND_JSON_TEXT:
            strbuf_appendf(out, "CAST(c%zu AS JSON)", i);
            break;
        default:
            if (columns[i].bounded_numeric) { /* DECIMAL cannot hold these: say so, never a silent NULL */
                strbuf_appendf(out, "CASE WHEN c%zu IN ('NaN', 'Infinity', '-Infinity') THEN error(", i);
                strbuf sentence;
                strbuf_init(&sentence);
                strbuf_appendf(&sentence, "column %s " POSTGRES_NONFINITE_MARKER ", which %s cannot; a local or "
                               "materialized sync keeps it as %s", columns[i].name, columns[i].duckdb_type,
                               columns[i].guard_scale >= 0 ? "exact text" : "DOUBLE");
                duck_append_literal(out, sentence.data ? sentence.data : "");
                strbuf_free(&sentence);
                if (columns[i].guard_scale >= 0) {
                    /* A measured scale: a later value with more decimal places
                     * would be rounded by the CAST; refuse it instead. */
                    strbuf_appendf(out, ") WHEN length(split_part(c%zu, '.', 2)) > %d THEN error(", i,
                                   columns[i].guard_scale);
                    strbuf_init(&sentence);
                    strbuf_appendf(&sentence, "column %s now has values with more than %d decimal places, which %s "
                                   "would round; sync the source again to measure the column anew",
                                   columns[i].name, columns[i].guard_scale, columns[i].duckdb_type);
                    duck_append_literal(out, sentence.data ? sentence.data : "");
                    strbuf_free(&sentence);
                }
                strbuf_appendf(out, ") ELSE CAST(c%zu AS %s) END", i, columns[i].duckdb_type);
            } else {
                strbuf_appendf(out, "CAST(c%zu AS %s)", i, columns[i].duckdb_type);
            }
        }
        strbuf_append_str(out, " AS ");
        duck_append_identifier(out, columns[i].name);
    }
}

/* libpq's messages about a malformed connection string quote the string,
 * password included; say what is wrong without repeating it. */
static const char *safe_message(PGconn *conn)
{
    const char *message = conn ? PQerrorMessage(conn) : "out of memory";
    if (strstr(message, "connection info string") != NULL || strstr(message, "invalid URI") != NULL ||
        strstr(message, "invalid connection option") != NULL)
        return "the connection string is malformed; use key=value pairs (host=... dbname=... user=... "
               "password=...) or a postgresql:// URI";
    return message;
}

int postgres_connect(const char *dsn, int statement_timeout_seconds, PGconn **out, agnes_error *err)
{
    char options[300];
    snprintf(options, sizeof options,
             "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
             " -c default_transaction_read_only=on -c statement_timeout=%ds",
             statement_timeout_seconds);
    const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", "client_encoding", NULL};
    const char *values[] = {dsn, "10", options, "agnes", "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    *out = NULL;
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        char message[600];
        size_t len = 0;
        for (const char *p = safe_message(conn); *p != '\0' && len + 1 < sizeof message; p++) {
            bool space = *p == '\n' || *p == '\t' || *p == ' ';
            if (!space || (len > 0 && message[len - 1] != ' ')) /* one line, single spaces */
                message[len++] = space ? ' ' : *p;
        }
        while (len > 0 && (message[len - 1] == ' ' || message[len - 1] == '.' || message[len - 1] == '?'))
            len--;
        message[len] = '\0';
        PQfinish(conn);
        return agnes_error_set(err, AGNES_ERR_NETWORK, "cannot connect to PostgreSQL: %s", message);
    }
    *out = conn;
    return AGNES_OK;
}
