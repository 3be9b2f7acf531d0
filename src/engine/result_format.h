/*
 * result_format.h - DuckDB values as JSON and CSV text.
 *
 * Values are read straight from a result chunk's vectors (no per-value
 * string conversion by DuckDB) and written into a strbuf.  The mapping is
 * chosen so a client gets back exactly what is stored:
 *
 *   BOOLEAN                 true / false
 *   integers                numbers; beyond +-2^53 (what a double holds
 *                           exactly) strings, so JavaScript clients do not
 *                           silently round ids
 *   FLOAT, DOUBLE           shortest text that reads back to the same value;
 *                           NaN and infinities as the strings "NaN",
 *                           "Infinity", "-Infinity"
 *   DECIMAL                 strings ("12.50"): exact, scale kept
 *   DATE, TIME, TIMESTAMP   ISO-8601 strings; TIMESTAMP WITH TIME ZONE ends
 *                           in "Z" (DuckDB stores it in UTC)
 *   INTERVAL                ISO-8601 durations ("P1M2DT3.5S")
 *   UUID, ENUM, VARCHAR     strings (bytes that are not UTF-8 become U+FFFD);
 *                           BLOB as DuckDB prints it ("\xAB")
 *   JSON                    the document itself, with bare NaN / Infinity /
 *                           -Infinity (which DuckDB writes for json_object('x',
 *                           0/0)) as the strings above, so every answer is
 *                           JSON; text that is not JSON as a string
 *   LIST, ARRAY             arrays; STRUCT objects; MAP arrays of
 *                           {"key", "value"}; UNION the active member
 *   NULL                    null (an empty field in CSV)
 *
 * Types outside this list (BIT, BIGNUM, ...) are refused before the first
 * row is sent, with the column named, so a stream never dies halfway.
 */
#ifndef AGNES_ENGINE_RESULT_FORMAT_H
#define AGNES_ENGINE_RESULT_FORMAT_H

#include <duckdb.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/strbuf.h"

/* AGNES_OK when every value of `type` can be formatted; otherwise
 * AGNES_ERR_INVALID naming `column` and the CAST that fixes it. */
int result_format_supported(duckdb_logical_type type, const char *column, agnes_error *err);

/* The type's SQL name ("BIGINT", "DECIMAL(18,2)", "VARCHAR[]",
 * "STRUCT(a INTEGER)"). */
void result_format_type_name(duckdb_logical_type type, strbuf *out);

/* Append row `row` of `vector` as a JSON value. */
void result_format_json(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row);

/* The shortest %g text (15 to 17 digits for a double, 6 to 9 for a float;
 * from one digit for a subnormal) that reads back as exactly value; NaN
 * and +-Infinity as those words (quoted with json). */
void result_format_real(strbuf *out, double value, bool is_float, bool json);

/* Append text as a JSON string literal; invalid UTF-8 becomes U+FFFD. */
void result_format_json_string(strbuf *out, const char *text, size_t len);

/* Append a JSON document, normalised as described above. */
void result_format_json_document(strbuf *out, const char *text, size_t len);

/* Append text as one CSV field: quoted (quotes doubled) when it holds a
 * comma, quote or line break. */
void result_format_csv_text(strbuf *out, const char *text, size_t len);

/* Append row `row` of `vector` as one CSV field (RFC 4180 quoting; nested
 * values as their JSON text). */
void result_format_csv(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row);

#endif
