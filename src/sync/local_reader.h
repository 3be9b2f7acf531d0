/*
 * local_reader.h - how an uploaded text file is read: the CSV dialect and
 * the column types, decided before a single row is converted.
 *
 * DuckDB's own sniffer is good at types and quotes but not at the two
 * things uploads got wrong: it reads a ragged or semicolon file as one
 * column, and it types integers beyond BIGINT as DOUBLE, which rounds
 * them (12345678901234567891 then equals a value that is not in the file).
 * So the plan is built in steps, each overridable by the caller:
 *
 *   1. dialect (CSV/TSV): the delimiter is counted on the first records
 *      (quote-aware, , ; tab |, the most consistent wins); quote, escape
 *      and header come from sniff_csv() with that delimiter; a decimal
 *      comma is recognised when numbers are written 1,5 and never 1.5;
 *      a field like 1.234,50 or 1.234.567 makes '.' the thousands
 *      separator (and ',' the decimal one).  DuckDB's reader knows no
 *      thousands separator, so such columns are read as text, measured
 *      (every value a grouped number: BIGINT or DECIMAL(38,s)) and cast
 *      once the separators are stripped; a column whose type the caller
 *      gave is cast the same way.
 *   2. types: DESCRIBE of the reader (sample_size rows, DuckDB's default
 *      20480, or -1 for the whole file), the caller's types on top.
 *   3. exactness: every column inferred DOUBLE is read as text and cast in
 *      the conversion, guarded: a value longer than 15 characters stops it.
 *      Only then is the column measured over the whole file; if a value
 *      has more significant digits than a DOUBLE keeps (15), the column
 *      becomes BIGINT / UBIGINT / DECIMAL(38,s) as fits, else VARCHAR.
 *      TIMESTAMP columns get the same guard: more digits of a second than
 *      microseconds make them TIMESTAMP_NS (text when they carry a zone,
 *      which has no nanosecond type).  Parquet has no 128-bit
 *      integers (DuckDB writes HUGEINT as DOUBLE), so HUGEINT and
 *      UHUGEINT become DECIMAL(38,0).  JSON readers keep fractional
 *      numbers as doubles whatever the column type, so a JSON number that
 *      would lose digits is refused with its line instead.
 *
 * Invariant: the reader SQL this module appends only ever quotes caller
 * text as SQL string literals (column names that exist in the file, type
 * names that passed type_name_is_plain and DuckDB's own parser).
 */
#ifndef AGNES_SYNC_LOCAL_READER_H
#define AGNES_SYNC_LOCAL_READER_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/strbuf.h"

#define LOCAL_DETECT -1   /* a dialect field left to detection */
#define LOCAL_DEFAULT_SAMPLE_ROWS 20480 /* DuckDB's read_csv/read_json sample_size default */
#define LOCAL_NO_QUOTE 0  /* quote/escape: none at all */
#define LOCAL_NO_SEPARATOR 0 /* thousands_separator: numbers are not grouped */

/* What the caller asked for; every field may be left to detection. */
typedef struct local_read_options {
    int delimiter;         /* a byte, or LOCAL_DETECT */
    int quote;             /* a byte, LOCAL_NO_QUOTE, or LOCAL_DETECT */
    int escape;            /* as quote */
    int header;            /* 1, 0, or LOCAL_DETECT */
    int decimal_separator; /* '.', ',', or LOCAL_DETECT */
    int thousands_separator; /* '.', ',', ' ', '\'', LOCAL_NO_SEPARATOR, or LOCAL_DETECT */
    const json_t *types;   /* {column: DuckDB type} fixed by the caller, or NULL */
    bool all_text;         /* every column VARCHAR: nothing is inferred */
    long long sample_size; /* rows inference looks at: 0 = DuckDB's default, -1 = every row */
} local_read_options;

/* The resolved plan (local_reader_plan fills it; local_reader_free). */
typedef struct local_reader {
    char format[16];       /* csv, tsv, json, ndjson, parquet */
    int delimiter, quote, escape, header, decimal_separator; /* resolved (csv/tsv) */
    int thousands_separator; /* resolved: a byte, or 0 (none) */
    long long sample_size;
    bool all_text;
    json_t *given;   /* dialect fields the caller set, ["delimiter", ...] */
    json_t *types;   /* {column: type} passed to the reader: given + widened */
    json_t *columns; /* [{name, type, chosen: detected|given|widened|text, note?}] */
    json_t *guarded; /* DOUBLE columns not yet proven exact: read as text, checked as converted */
    json_t *described; /* the reader's columns as DuckDB inferred them */
    bool given_types; /* the caller passed types */
    json_t *grouped; /* {column: type}: numbers with thousands separators, read as text and cast once stripped */
} local_reader;

/* Fill options with "detect everything". */
void local_read_options_init(local_read_options *options);

/* Decide how `file` (already known to be `format`) is read.
 * AGNES_ERR_INVALID with a sentence naming the column, line or option and
 * the fix (answer 400); other codes are the server's failures.  conn is an
 * in-memory DuckDB connection the caller owns. */
int local_reader_plan(duckdb_connection conn, const char *format, const char *file,
                      const local_read_options *options, local_reader *out, agnes_error *err);

/* Append "SELECT ... FROM <reader>" reading file by the plan.  While
 * columns are guarded (see local_reader_widen), they are read as text and
 * cast to DOUBLE in the SELECT, and a value too long for a DOUBLE to hold
 * exactly fails the statement: the exactness check costs no extra pass
 * over the file in the common case. */
void local_reader_append_select(const local_reader *reader, const char *file, strbuf *sql);

/* The SELECT of local_reader_append_select failed while columns were
 * guarded: measure the guarded columns over the whole file, widen those a
 * DOUBLE would round (BIGINT, UBIGINT, DECIMAL(38,s), VARCHAR) and drop
 * the guards, so the next SELECT reads with final types (and reports bad
 * lines with their numbers).  Errors as local_reader_plan. */
int local_reader_widen(duckdb_connection conn, local_reader *reader, const char *file, agnes_error *err);

/* True while some column is guarded. */
bool local_reader_guarded(const local_reader *reader);

/* The sentence to add to a conversion error: whether the column's type was
 * given by the caller (then the value, the type or thousands_separator is
 * wrong) or inferred from a sample.  column may be NULL (unknown). */
const char *local_reader_conversion_hint(const local_reader *reader, const char *column, const char *message);

/* {delimiter, quote, escape, header, decimal_separator, thousands_separator, given} for csv and
 * tsv, NULL for the other formats (new reference). */
json_t *local_reader_dialect_json(const local_reader *reader);

void local_reader_free(local_reader *reader);

#endif
