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
    KIND_ARRAY,    /* to_json(col)::text, from_json(c, '["<element>"]') */
};

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
        if (precision >= 1 && precision <= 38 && scale <= precision)
            snprintf(duckdb_type, size, "DECIMAL(%d,%d)", precision, scale);
        else
            snprintf(duckdb_type, size, "DOUBLE");
        return KIND_CAST;
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
        /* Elements that do not survive JSON as themselves stay text. */
        if (inner_kind != KIND_CAST || strcmp(inner, "JSON") == 0)
            snprintf(inner, sizeof inner, "VARCHAR");
        snprintf(column->duckdb_type, sizeof column->duckdb_type, "%s[]", inner);
        column->kind = KIND_ARRAY;
    } else {
        column->kind = map_scalar(PQgetvalue(res, 0, 1), typmod, column->duckdb_type, sizeof column->duckdb_type);
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
        case KIND_ARRAY: {
            char element[130];
            snprintf(element, sizeof element, "%.*s", (int)(strlen(columns[i].duckdb_type) - 2),
                     columns[i].duckdb_type);
            strbuf_appendf(out, "from_json(c%zu, '[\"%s\"]')", i, element);
            break;
        }
        default:
            strbuf_appendf(out, "CAST(c%zu AS %s)", i, columns[i].duckdb_type);
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
