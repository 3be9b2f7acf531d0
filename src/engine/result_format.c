#include "engine/result_format.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "store/duck.h"

/* 2^53: the largest integer range a JSON reader's double holds exactly. */
#define JSON_SAFE_INTEGER 9007199254740992LL

typedef __int128 int128;
typedef unsigned __int128 uint128;

static bool is_json_alias(duckdb_logical_type type)
{
    char *alias = duckdb_logical_type_get_alias(type);
    bool json = alias != NULL && strcmp(alias, "JSON") == 0;
    duckdb_free(alias);
    return json;
}

/* ---- text that must stay valid --------------------------------------------- */

/* Text as a JSON string literal; bytes that are not UTF-8 (a remote source
 * in SQL_ASCII, a damaged file) become U+FFFD, so the answer stays JSON. */
void result_format_json_string(strbuf *out, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && p[i] < 0x80)
        i++;
    if (i == len) { /* ASCII: the common case */
        strbuf_append_json_string(out, text, len);
        return;
    }
    strbuf clean;
    strbuf_init(&clean);
    for (i = 0; i < len;) {
        size_t n = utf8_sequence_length(p + i, len - i);
        if (n == 0) {
            strbuf_append(&clean, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            strbuf_append(&clean, text + i, n);
            i += n;
        }
    }
    strbuf_append_json_string(out, clean.data ? clean.data : "", clean.len);
    strbuf_free(&clean);
}

/* A JSON document DuckDB made, checked and normalised: bare NaN, Infinity
 * and -Infinity (json_object('x', 0/0), to_json('inf'::DOUBLE)) become the
 * strings DOUBLE cells use, so every answer parses.  Returns the position
 * after the value, or NULL when the text is not JSON. */
#define JSON_MAX_DEPTH 512

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *json_value(strbuf *out, const char *p, const char *end, int depth);

static const char *json_string_token(strbuf *out, const char *p, const char *end)
{
    const char *start = p++;
    while (p < end && *p != '"') {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            if (++p >= end || strchr("\"\\/bfnrtu", *p) == NULL)
                return NULL;
            if (*p == 'u') {
                for (int k = 1; k <= 4; k++)
                    if (p + k >= end || !isxdigit((unsigned char)p[k]))
                        return NULL;
                p += 4;
            }
            p++;
        } else {
            size_t n = utf8_sequence_length((const unsigned char *)p, (size_t)(end - p));
            if (n == 0)
                return NULL;
            p += n;
        }
    }
    if (p >= end)
        return NULL;
    strbuf_append(out, start, (size_t)(p + 1 - start));
    return p + 1;
}

static const char *json_container(strbuf *out, const char *p, const char *end, int depth)
{
    char close = *p == '{' ? '}' : ']';
    bool object = *p == '{';
    strbuf_append_char(out, *p++);
    p = skip_space(p, end);
    if (p < end && *p == close) {
        strbuf_append_char(out, close);
        return p + 1;
    }
    for (;;) {
        if (object) {
            p = skip_space(p, end);
            if (p >= end || *p != '"' || (p = json_string_token(out, p, end)) == NULL)
                return NULL;
            p = skip_space(p, end);
            if (p >= end || *p != ':')
                return NULL;
            strbuf_append_char(out, ':');
            p++;
        }
        if ((p = json_value(out, p, end, depth + 1)) == NULL)
            return NULL;
        p = skip_space(p, end);
        if (p < end && *p == ',') {
            strbuf_append_char(out, ',');
            p++;
            continue;
        }
        if (p < end && *p == close) {
            strbuf_append_char(out, close);
            return p + 1;
        }
        return NULL;
    }
}

static const char *json_value(strbuf *out, const char *p, const char *end, int depth)
{
    static const struct {
        const char *token, *replacement;
    } words[] = {{"true", "true"},          {"false", "false"},       {"null", "null"},
                 {"NaN", "\"NaN\""},        {"-Infinity", "\"-Infinity\""}, {"Infinity", "\"Infinity\""}};
    p = skip_space(p, end);
    if (p >= end || depth > JSON_MAX_DEPTH)
        return NULL;
    if (*p == '"')
        return json_string_token(out, p, end);
    if (*p == '{' || *p == '[')
        return json_container(out, p, end, depth);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].token);
        if ((size_t)(end - p) >= n && memcmp(p, words[i].token, n) == 0) {
            strbuf_append_str(out, words[i].replacement);
            return p + n;
        }
    }
    const char *start = p; /* a number: -?digits[.digits][e[+-]digits] */
    if (*p == '-')
        p++;
    if (p >= end || !isdigit((unsigned char)*p))
        return NULL;
    while (p < end && (isdigit((unsigned char)*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
        p++;
    strbuf_append(out, start, (size_t)(p - start));
    return p;
}

void result_format_json_document(strbuf *out, const char *text, size_t len)
{
    size_t mark = out->len;
    const char *end = text + len, *p = json_value(out, text, end, 0);
    if (p != NULL && skip_space(p, end) == end)
        return;
    /* Not JSON after all (a JSON column fed from a file): say it as text. */
    out->len = mark;
    if (out->data != NULL)
        out->data[mark] = '\0';
    result_format_json_string(out, text, len);
}

/* ---- type checks and names ------------------------------------------- */

int result_format_supported(duckdb_logical_type type, const char *column, agnes_error *err)
{
    duckdb_type id = duckdb_get_type_id(type);
    int rc = AGNES_OK;
    duckdb_logical_type child = NULL;
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: case DUCKDB_TYPE_TINYINT: case DUCKDB_TYPE_SMALLINT: case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_BIGINT: case DUCKDB_TYPE_UTINYINT: case DUCKDB_TYPE_USMALLINT: case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_UBIGINT: case DUCKDB_TYPE_HUGEINT: case DUCKDB_TYPE_UHUGEINT: case DUCKDB_TYPE_FLOAT:
    case DUCKDB_TYPE_DOUBLE: case DUCKDB_TYPE_DECIMAL: case DUCKDB_TYPE_VARCHAR: case DUCKDB_TYPE_BLOB:
    case DUCKDB_TYPE_DATE: case DUCKDB_TYPE_TIME: case DUCKDB_TYPE_TIME_TZ: case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_S: case DUCKDB_TYPE_TIMESTAMP_MS: case DUCKDB_TYPE_TIMESTAMP_NS:
    case DUCKDB_TYPE_TIMESTAMP_TZ: case DUCKDB_TYPE_INTERVAL: case DUCKDB_TYPE_UUID: case DUCKDB_TYPE_ENUM:
    case DUCKDB_TYPE_SQLNULL:
        return AGNES_OK;
    case DUCKDB_TYPE_LIST:
        child = duckdb_list_type_child_type(type);
        break;
    case DUCKDB_TYPE_ARRAY:
        child = duckdb_array_type_child_type(type);
        break;
    case DUCKDB_TYPE_MAP:
        child = duckdb_map_type_key_type(type);
        rc = result_format_supported(child, column, err);
        duckdb_destroy_logical_type(&child);
        if (rc != AGNES_OK)
            return rc;
        child = duckdb_map_type_value_type(type);
        break;
    case DUCKDB_TYPE_STRUCT:
        for (idx_t i = 0; rc == AGNES_OK && i < duckdb_struct_type_child_count(type); i++) {
            child = duckdb_struct_type_child_type(type, i);
            rc = result_format_supported(child, column, err);
            duckdb_destroy_logical_type(&child);
        }
        return rc;
    case DUCKDB_TYPE_UNION:
        for (idx_t i = 0; rc == AGNES_OK && i < duckdb_union_type_member_count(type); i++) {
            child = duckdb_union_type_member_type(type, i);
            rc = result_format_supported(child, column, err);
            duckdb_destroy_logical_type(&child);
        }
        return rc;
    default: {
        strbuf name;
        strbuf_init(&name);
        result_format_type_name(type, &name);
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "Column \"%s\" has type %s, which the API cannot return. CAST it to VARCHAR in the query.",
                             column, name.data ? name.data : "?");
        strbuf_free(&name);
        return rc;
    }
    }
    rc = result_format_supported(child, column, err);
    duckdb_destroy_logical_type(&child);
    return rc;
}

static const char *simple_type_name(duckdb_type id)
{
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: return "BOOLEAN";
    case DUCKDB_TYPE_TINYINT: return "TINYINT";
    case DUCKDB_TYPE_SMALLINT: return "SMALLINT";
    case DUCKDB_TYPE_INTEGER: return "INTEGER";
    case DUCKDB_TYPE_BIGINT: return "BIGINT";
    case DUCKDB_TYPE_UTINYINT: return "UTINYINT";
    case DUCKDB_TYPE_USMALLINT: return "USMALLINT";
    case DUCKDB_TYPE_UINTEGER: return "UINTEGER";
    case DUCKDB_TYPE_UBIGINT: return "UBIGINT";
    case DUCKDB_TYPE_HUGEINT: return "HUGEINT";
    case DUCKDB_TYPE_UHUGEINT: return "UHUGEINT";
    case DUCKDB_TYPE_FLOAT: return "FLOAT";
    case DUCKDB_TYPE_DOUBLE: return "DOUBLE";
    case DUCKDB_TYPE_VARCHAR: return "VARCHAR";
    case DUCKDB_TYPE_BLOB: return "BLOB";
    case DUCKDB_TYPE_DATE: return "DATE";
    case DUCKDB_TYPE_TIME: return "TIME";
    case DUCKDB_TYPE_TIME_TZ: return "TIME WITH TIME ZONE";
    case DUCKDB_TYPE_TIMESTAMP: return "TIMESTAMP";
    case DUCKDB_TYPE_TIMESTAMP_S: return "TIMESTAMP_S";
    case DUCKDB_TYPE_TIMESTAMP_MS: return "TIMESTAMP_MS";
    case DUCKDB_TYPE_TIMESTAMP_NS: return "TIMESTAMP_NS";
    case DUCKDB_TYPE_TIMESTAMP_TZ: return "TIMESTAMP WITH TIME ZONE";
    case DUCKDB_TYPE_INTERVAL: return "INTERVAL";
    case DUCKDB_TYPE_UUID: return "UUID";
    case DUCKDB_TYPE_ENUM: return "ENUM";
    case DUCKDB_TYPE_BIT: return "BIT";
    case DUCKDB_TYPE_SQLNULL: return "NULL";
    default: return NULL;
    }
}

static void append_child_type(strbuf *out, duckdb_logical_type child)
{
    result_format_type_name(child, out);
    duckdb_destroy_logical_type(&child);
}

static bool plain_identifier(const char *name)
{
    if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return false;
    return true;
}

static void append_named_members(strbuf *out, duckdb_logical_type type, bool is_union)
{
    idx_t count = is_union ? duckdb_union_type_member_count(type) : duckdb_struct_type_child_count(type);
    strbuf_append_str(out, is_union ? "UNION(" : "STRUCT(");
    for (idx_t i = 0; i < count; i++) {
        char *name = is_union ? duckdb_union_type_member_name(type, i) : duckdb_struct_type_child_name(type, i);
        strbuf_append_str(out, i ? ", " : "");
        /* Member names are the caller's text, and this name is SQL: result
         * handles cast back to it.  Anything but a plain lowercase identifier
         * is quoted ("a HUGEINT once closed the STRUCT and ran a subquery). */
        if (name != NULL && plain_identifier(name))
            strbuf_append_str(out, name);
        else
            duck_append_identifier(out, name ? name : "");
        strbuf_append_char(out, ' ');
        duckdb_free(name);
        append_child_type(out, is_union ? duckdb_union_type_member_type(type, i)
                                         : duckdb_struct_type_child_type(type, i));
    }
    strbuf_append_char(out, ')');
}

void result_format_type_name(duckdb_logical_type type, strbuf *out)
{
    duckdb_type id = duckdb_get_type_id(type);
    if (is_json_alias(type)) {
        strbuf_append_str(out, "JSON");
        return;
    }
    const char *simple = simple_type_name(id);
    if (simple != NULL) {
        strbuf_append_str(out, simple);
        return;
    }
    switch (id) {
    case DUCKDB_TYPE_DECIMAL:
        strbuf_appendf(out, "DECIMAL(%u,%u)", duckdb_decimal_width(type), duckdb_decimal_scale(type));
        return;
    case DUCKDB_TYPE_LIST:
        append_child_type(out, duckdb_list_type_child_type(type));
        strbuf_append_str(out, "[]");
        return;
    case DUCKDB_TYPE_ARRAY:
        append_child_type(out, duckdb_array_type_child_type(type));
        strbuf_appendf(out, "[%llu]", (unsigned long long)duckdb_array_type_array_size(type));
        return;
    case DUCKDB_TYPE_MAP:
        strbuf_append_str(out, "MAP(");
        append_child_type(out, duckdb_map_type_key_type(type));
        strbuf_append_str(out, ", ");
        append_child_type(out, duckdb_map_type_value_type(type));
        strbuf_append_char(out, ')');
        return;
    case DUCKDB_TYPE_STRUCT:
        append_named_members(out, type, false);
        return;
    case DUCKDB_TYPE_UNION:
        append_named_members(out, type, true);
        return;
    default:
        strbuf_appendf(out, "TYPE_%d", (int)id);
    }
}

/* ---- scalars ----------------------------------------------------------- */

static void append_int128(strbuf *out, int128 value, bool quote)
{
    char digits[48];
    int n = 0;
    uint128 magnitude = value < 0 ? (uint128)0 - (uint128)value : (uint128)value;
    /* Nearly every value fits 64 bits, where a division by ten is a
     * multiply; a 128-bit one is a library call per digit (a 1000-row
     * aggregate's SUM column cost 0.3 ms that way). */
    if (magnitude >> 64 == 0) {
        uint64_t small = (uint64_t)magnitude;
        do {
            digits[n++] = (char)('0' + (int)(small % 10));
            small /= 10;
        } while (small != 0);
    } else {
        do {
            digits[n++] = (char)('0' + (int)(magnitude % 10));
            magnitude /= 10;
        } while (magnitude != 0);
    }
    char text[50];
    int len = 0;
    if (value < 0)
        text[len++] = '-';
    while (n > 0)
        text[len++] = digits[--n];
    if (quote)
        strbuf_append_char(out, '"');
    strbuf_append(out, text, (size_t)len);
    if (quote)
        strbuf_append_char(out, '"');
}

static void append_integer(strbuf *out, int128 value, bool json)
{
    bool unsafe = value > JSON_SAFE_INTEGER || value < -JSON_SAFE_INTEGER;
    append_int128(out, value, json && unsafe);
}

static void append_uinteger(strbuf *out, uint128 value, bool json)
{
    if (value >> 127 == 0) { /* every type but the top half of UHUGEINT */
        append_int128(out, (int128)value, json && value > (uint128)JSON_SAFE_INTEGER);
        return;
    }
    /* Beyond int128 only for the top half of UHUGEINT: print digit by digit. */
    char digits[48];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(value % 10));
        value /= 10;
    } while (value != 0);
    if (json)
        strbuf_append_char(out, '"');
    while (n > 0)
        strbuf_append_char(out, digits[--n]);
    if (json)
        strbuf_append_char(out, '"');
}

/* %g's text of the `precision` significant digits in `digits` (no sign)
 * times 10^exponent: fixed when precision > exponent >= -4, else
 * scientific; trailing zeros and a bare point dropped (C11 7.21.6.1). */
static size_t g_text(char *text, bool negative, const char *digits, int precision, int exponent)
{
    size_t n = 0;
    int last = precision - 1; /* the last digit that is not a trailing zero */
    while (last > 0 && digits[last] == '0')
        last--;
    if (negative)
        text[n++] = '-';
    if (exponent < -4 || exponent >= precision) {
        text[n++] = digits[0];
        if (last > 0) {
            text[n++] = '.';
            for (int i = 1; i <= last; i++)
                text[n++] = digits[i];
        }
        n += (size_t)sprintf(text + n, "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
        return n;
    }
    if (exponent < 0) {
        text[n++] = '0';
        text[n++] = '.';
        for (int i = -1; i > exponent; i--)
            text[n++] = '0';
        for (int i = 0; i <= last; i++)
            text[n++] = digits[i];
    } else {
        for (int i = 0; i <= exponent; i++)
            text[n++] = digits[i];
        if (last > exponent) {
            text[n++] = '.';
            for (int i = exponent + 1; i <= last; i++)
                text[n++] = digits[i];
        }
    }
    text[n] = '\0';
    return n;
}

/* The 15- or 16-digit %g text of a double from its 17 correctly rounded
 * digits, or false when only printf can say: rounding 17 digits again
 * equals rounding the exact value once unless the dropped digits read as
 * exactly one half ("5" / "50"), where the exact value may lie either side. */
static bool shorter_text(char *text, bool negative, const char *digits17, int exponent, int precision)
{
    char digits[17], dropped = digits17[precision];
    if (dropped == '5' && (precision == 16 || digits17[16] == '0'))
        return false;
    bool up = dropped >= '5';
    memcpy(digits, digits17, (size_t)precision);
    for (int i = precision - 1; up && i >= 0; i--) {
        if (digits[i] == '9') {
            digits[i] = '0';
        } else {
            digits[i]++;
            up = false;
        }
    }
    if (up) { /* 99...9 rounded up: 10...0, one decade higher */
        digits[0] = '1';
        exponent++;
    }
    g_text(text, negative, digits, precision, exponent);
    return true;
}

void result_format_real(strbuf *out, double value, bool is_float, bool json)
{
    const char *special = isnan(value) ? "NaN" : isinf(value) ? (value > 0 ? "Infinity" : "-Infinity") : NULL;
    if (special != NULL) {
        if (json)
            strbuf_append_json_string(out, special, strlen(special));
        else
            strbuf_append_str(out, special);
        return;
    }
    char text[40];
    if (!is_float && fabs(value) >= DBL_MIN) {
        /* The shortest of %.15g..%.17g that reads back, as the loop below
         * finds it, with one printf instead of up to three printf + strtod
         * pairs (a 1000-row average column: 0.6 ms -> 0.2 ms).  Proven the
         * same text as the loop by tests/unit/test_query_text.c. */
        char e17[40], digits17[17];
        snprintf(e17, sizeof e17, "%.16e", value); /* [-]d.dddddddddddddddde[+-]dd[d] */
        const char *p = e17 + (value < 0);
        digits17[0] = p[0];
        memcpy(digits17 + 1, p + 2, 16);
        int exponent = atoi(p + 19);
        for (int precision = 15; precision <= 16; precision++) {
            if (!shorter_text(text, value < 0, digits17, exponent, precision))
                snprintf(text, sizeof text, "%.*g", precision, value);
            if (strtod(text, NULL) == value) {
                strbuf_append_str(out, text);
                return;
            }
        }
        g_text(text, value < 0, digits17, 17, exponent);
        strbuf_append_str(out, text);
        return;
    }
    /* Floats, zero and subnormals (which hold fewer digits: search from
     * one, so 1e-320 prints so). */
    int first = fabs(value) < DBL_MIN && value != 0 ? 1 : is_float ? 6 : 15;
    for (int precision = first; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, value);
        double back = strtod(text, NULL);
        if (is_float ? (float)back == (float)value : back == value)
            break;
    }
    strbuf_append_str(out, text);
}

static void append_decimal(strbuf *out, int128 value, unsigned scale, bool json)
{
    strbuf digits;
    strbuf_init(&digits);
    append_int128(&digits, value < 0 ? -value : value, false);
    const char *d = digits.data ? digits.data : "0";
    size_t len = strlen(d);
    if (json)
        strbuf_append_char(out, '"');
    if (value < 0)
        strbuf_append_char(out, '-');
    if (scale == 0) {
        strbuf_append(out, d, len);
    } else {
        if (len <= scale) {
            strbuf_append_str(out, "0.");
            for (size_t i = len; i < scale; i++)
                strbuf_append_char(out, '0');
            strbuf_append(out, d, len);
        } else {
            strbuf_append(out, d, len - scale);
            strbuf_append_char(out, '.');
            strbuf_append(out, d + len - scale, scale);
        }
    }
    if (json)
        strbuf_append_char(out, '"');
    strbuf_free(&digits);
}

static int128 decimal_value(duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    void *data = duckdb_vector_get_data(vector);
    switch (duckdb_decimal_internal_type(type)) {
    case DUCKDB_TYPE_SMALLINT: return ((int16_t *)data)[row];
    case DUCKDB_TYPE_INTEGER: return ((int32_t *)data)[row];
    case DUCKDB_TYPE_BIGINT: return ((int64_t *)data)[row];
    default: {
        duckdb_hugeint h = ((duckdb_hugeint *)data)[row];
        return (int128)(((uint128)(uint64_t)h.upper << 64) | h.lower);
    }
    }
}

static void append_date_text(strbuf *out, duckdb_date date)
{
    if (!duckdb_is_finite_date(date)) {
        strbuf_append_str(out, date.days > 0 ? "infinity" : "-infinity");
        return;
    }
    duckdb_date_struct d = duckdb_from_date(date);
    strbuf_appendf(out, d.year >= 0 && d.year <= 9999 ? "%04d-%02d-%02d" : "%d-%02d-%02d", (int)d.year, d.month,
                   d.day);
}

/* Fraction digits without trailing zeros (".5", ".000123"), or nothing. */
static void append_fraction(strbuf *out, long long fraction, int digits)
{
    if (fraction == 0)
        return;
    char text[16];
    snprintf(text, sizeof text, "%0*lld", digits, fraction);
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '0')
        len--;
    strbuf_append_char(out, '.');
    strbuf_append(out, text, len);
}

static void append_time_text(strbuf *out, duckdb_time_struct t, long long fraction, int digits)
{
    strbuf_appendf(out, "%02d:%02d:%02d", t.hour, t.min, t.sec);
    append_fraction(out, fraction, digits);
}

/* A timestamp from microseconds since the epoch plus extra nanoseconds. */
static void append_timestamp_text(strbuf *out, int64_t micros, int nanos, bool utc)
{
    duckdb_timestamp ts = {micros};
    if (!duckdb_is_finite_timestamp(ts)) {
        strbuf_append_str(out, micros > 0 ? "infinity" : "-infinity");
        return;
    }
    duckdb_timestamp_struct s = duckdb_from_timestamp(ts);
    append_date_text(out, duckdb_to_date(s.date));
    strbuf_append_char(out, 'T');
    if (nanos >= 0)
        append_time_text(out, s.time, (long long)s.time.micros * 1000 + nanos, 9);
    else
        append_time_text(out, s.time, s.time.micros, 6);
    if (utc)
        strbuf_append_char(out, 'Z');
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static void append_interval_text(strbuf *out, duckdb_interval v)
{
    if (v.months == 0 && v.days == 0 && v.micros == 0) {
        strbuf_append_str(out, "PT0S");
        return;
    }
    strbuf_append_char(out, 'P');
    if (v.months / 12 != 0)
        strbuf_appendf(out, "%dY", v.months / 12);
    if (v.months % 12 != 0)
        strbuf_appendf(out, "%dM", v.months % 12);
    if (v.days != 0)
        strbuf_appendf(out, "%dD", v.days);
    if (v.micros == 0)
        return;
    strbuf_append_char(out, 'T');
    int64_t micros = v.micros < 0 ? -v.micros : v.micros;
    const char *sign = v.micros < 0 ? "-" : "";
    int64_t hours = micros / 3600000000LL, minutes = micros / 60000000LL % 60, seconds = micros / 1000000 % 60;
    if (hours)
        strbuf_appendf(out, "%s%" PRId64 "H", sign, hours);
    if (minutes)
        strbuf_appendf(out, "%s%" PRId64 "M", sign, minutes);
    if (seconds || micros % 1000000) {
        strbuf_appendf(out, "%s%" PRId64, sign, seconds);
        append_fraction(out, micros % 1000000, 6);
        strbuf_append_char(out, 'S');
    }
}

static void append_uuid_text(strbuf *out, duckdb_hugeint h)
{
    /* DuckDB stores a UUID with its top bit flipped, so they sort as text does. */
    uint64_t upper = (uint64_t)h.upper ^ (1ULL << 63), lower = h.lower;
    strbuf_appendf(out, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, upper >> 32,
                   (upper >> 16) & 0xffff, upper & 0xffff, lower >> 48, lower & (uint64_t)0xffffffffffff);
}

static void append_blob_text(strbuf *out, const char *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c < 32 || c > 126 || c == '\\')
            strbuf_appendf(out, "\\x%02X", c);
        else
            strbuf_append_char(out, (char)c);
    }
}

/* Text that is a string in JSON: built first, then quoted once. */
static void append_as_string(strbuf *out, bool json, strbuf *scratch)
{
    if (json)
        result_format_json_string(out, scratch->data ? scratch->data : "", scratch->len);
    else
        strbuf_append(out, scratch->data ? scratch->data : "", scratch->len);
}

static idx_t enum_index(duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    void *data = duckdb_vector_get_data(vector);
    switch (duckdb_enum_internal_type(type)) {
    case DUCKDB_TYPE_UTINYINT: return ((uint8_t *)data)[row];
    case DUCKDB_TYPE_USMALLINT: return ((uint16_t *)data)[row];
    default: return ((uint32_t *)data)[row];
    }
}

/* Values that print as text (quoted in JSON). */
static void format_textual(strbuf *out, duckdb_vector vector, duckdb_logical_type type, duckdb_type id, idx_t row,
                           bool json)
{
    void *data = duckdb_vector_get_data(vector);
    strbuf text;
    strbuf_init(&text);
    switch (id) {
    case DUCKDB_TYPE_DATE: append_date_text(&text, ((duckdb_date *)data)[row]); break;
    case DUCKDB_TYPE_TIME: {
        duckdb_time_struct t = duckdb_from_time(((duckdb_time *)data)[row]);
        append_time_text(&text, t, t.micros, 6);
        break;
    }
    case DUCKDB_TYPE_TIME_TZ: {
        duckdb_time_tz_struct t = duckdb_from_time_tz(((duckdb_time_tz *)data)[row]);
        append_time_text(&text, t.time, t.time.micros, 6);
        int offset = t.offset < 0 ? -t.offset : t.offset;
        strbuf_appendf(&text, "%c%02d:%02d", t.offset < 0 ? '-' : '+', offset / 3600, offset / 60 % 60);
        break;
    }
    case DUCKDB_TYPE_TIMESTAMP: append_timestamp_text(&text, ((int64_t *)data)[row], -1, false); break;
    case DUCKDB_TYPE_TIMESTAMP_TZ: append_timestamp_text(&text, ((int64_t *)data)[row], -1, true); break;
    case DUCKDB_TYPE_TIMESTAMP_S: append_timestamp_text(&text, ((int64_t *)data)[row] * 1000000, -1, false); break;
    case DUCKDB_TYPE_TIMESTAMP_MS: append_timestamp_text(&text, ((int64_t *)data)[row] * 1000, -1, false); break;
    case DUCKDB_TYPE_TIMESTAMP_NS: {
        int64_t ns = ((int64_t *)data)[row];
        append_timestamp_text(&text, floor_div(ns, 1000), (int)(ns - floor_div(ns, 1000) * 1000), false);
        break;
    }
    case DUCKDB_TYPE_INTERVAL: append_interval_text(&text, ((duckdb_interval *)data)[row]); break;
    case DUCKDB_TYPE_UUID: append_uuid_text(&text, ((duckdb_hugeint *)data)[row]); break;
    case DUCKDB_TYPE_ENUM: {
        char *value = duckdb_enum_dictionary_value(type, enum_index(vector, type, row));
        strbuf_append_str(&text, value ? value : "");
        duckdb_free(value);
        break;
    }
    case DUCKDB_TYPE_BLOB: {
        duckdb_string_t *s = &((duckdb_string_t *)data)[row];
        append_blob_text(&text, duckdb_string_t_data(s), duckdb_string_t_length(*s));
        break;
    }
    default: break;
    }
    append_as_string(out, json, &text);
    strbuf_free(&text);
}

static bool is_null(duckdb_vector vector, idx_t row)
{
    uint64_t *validity = duckdb_vector_get_validity(vector);
    return validity != NULL && !duckdb_validity_row_is_valid(validity, row);
}

/* ---- nested ------------------------------------------------------------ */

static void format_value(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row, bool json);

static void format_list(strbuf *out, duckdb_vector child, duckdb_logical_type child_type, idx_t offset, idx_t length)
{
    strbuf_append_char(out, '[');
    for (idx_t i = 0; i < length; i++) {
        if (i)
            strbuf_append_char(out, ',');
        format_value(out, child, child_type, offset + i, true);
    }
    strbuf_append_char(out, ']');
}

static void format_struct(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    strbuf_append_char(out, '{');
    for (idx_t i = 0; i < duckdb_struct_type_child_count(type); i++) {
        char *name = duckdb_struct_type_child_name(type, i);
        duckdb_logical_type child_type = duckdb_struct_type_child_type(type, i);
        if (i)
            strbuf_append_char(out, ',');
        result_format_json_string(out, name ? name : "", name ? strlen(name) : 0);
        strbuf_append_char(out, ':');
        format_value(out, duckdb_struct_vector_get_child(vector, i), child_type, row, true);
        duckdb_destroy_logical_type(&child_type);
        duckdb_free(name);
    }
    strbuf_append_char(out, '}');
}

static void format_map(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    duckdb_list_entry entry = ((duckdb_list_entry *)duckdb_vector_get_data(vector))[row];
    duckdb_vector pairs = duckdb_list_vector_get_child(vector);
    duckdb_vector keys = duckdb_struct_vector_get_child(pairs, 0), values = duckdb_struct_vector_get_child(pairs, 1);
    duckdb_logical_type key_type = duckdb_map_type_key_type(type), value_type = duckdb_map_type_value_type(type);
    strbuf_append_char(out, '[');
    for (idx_t i = 0; i < entry.length; i++) {
        strbuf_append_str(out, i ? ",{\"key\":" : "{\"key\":");
        format_value(out, keys, key_type, entry.offset + i, true);
        strbuf_append_str(out, ",\"value\":");
        format_value(out, values, value_type, entry.offset + i, true);
        strbuf_append_char(out, '}');
    }
    strbuf_append_char(out, ']');
    duckdb_destroy_logical_type(&key_type);
    duckdb_destroy_logical_type(&value_type);
}

static void format_nested(strbuf *out, duckdb_vector vector, duckdb_logical_type type, duckdb_type id, idx_t row)
{
    duckdb_logical_type child_type = NULL;
    switch (id) {
    case DUCKDB_TYPE_LIST: {
        duckdb_list_entry entry = ((duckdb_list_entry *)duckdb_vector_get_data(vector))[row];
        child_type = duckdb_list_type_child_type(type);
        format_list(out, duckdb_list_vector_get_child(vector), child_type, entry.offset, entry.length);
        break;
    }
    case DUCKDB_TYPE_ARRAY: {
        idx_t size = duckdb_array_type_array_size(type);
        child_type = duckdb_array_type_child_type(type);
        format_list(out, duckdb_array_vector_get_child(vector), child_type, row * size, size);
        break;
    }
    case DUCKDB_TYPE_STRUCT: format_struct(out, vector, type, row); break;
    case DUCKDB_TYPE_MAP: format_map(out, vector, type, row); break;
    case DUCKDB_TYPE_UNION: {
        uint8_t tag = ((uint8_t *)duckdb_vector_get_data(duckdb_struct_vector_get_child(vector, 0)))[row];
        child_type = duckdb_union_type_member_type(type, tag);
        format_value(out, duckdb_struct_vector_get_child(vector, (idx_t)tag + 1), child_type, row, true);
        break;
    }
    default: strbuf_append_str(out, "null");
    }
    if (child_type != NULL)
        duckdb_destroy_logical_type(&child_type);
}

/* json: a JSON value; otherwise the plain text of a CSV field (unquoted). */
static void format_value(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row, bool json)
{
    if (is_null(vector, row)) {
        if (json)
            strbuf_append_str(out, "null");
        return;
    }
    void *data = duckdb_vector_get_data(vector);
    duckdb_type id = duckdb_get_type_id(type);
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: strbuf_append_str(out, ((bool *)data)[row] ? "true" : "false"); return;
    case DUCKDB_TYPE_TINYINT: append_integer(out, ((int8_t *)data)[row], json); return;
    case DUCKDB_TYPE_SMALLINT: append_integer(out, ((int16_t *)data)[row], json); return;
    case DUCKDB_TYPE_INTEGER: append_integer(out, ((int32_t *)data)[row], json); return;
    case DUCKDB_TYPE_BIGINT: append_integer(out, ((int64_t *)data)[row], json); return;
    case DUCKDB_TYPE_UTINYINT: append_uinteger(out, ((uint8_t *)data)[row], json); return;
    case DUCKDB_TYPE_USMALLINT: append_uinteger(out, ((uint16_t *)data)[row], json); return;
    case DUCKDB_TYPE_UINTEGER: append_uinteger(out, ((uint32_t *)data)[row], json); return;
    case DUCKDB_TYPE_UBIGINT: append_uinteger(out, ((uint64_t *)data)[row], json); return;
    case DUCKDB_TYPE_HUGEINT: {
        duckdb_hugeint h = ((duckdb_hugeint *)data)[row];
        append_integer(out, (int128)(((uint128)(uint64_t)h.upper << 64) | h.lower), json);
        return;
    }
    case DUCKDB_TYPE_UHUGEINT: {
        duckdb_uhugeint h = ((duckdb_uhugeint *)data)[row];
        append_uinteger(out, ((uint128)h.upper << 64) | h.lower, json);
        return;
    }
    case DUCKDB_TYPE_FLOAT: result_format_real(out, ((float *)data)[row], true, json); return;
    case DUCKDB_TYPE_DOUBLE: result_format_real(out, ((double *)data)[row], false, json); return;
    case DUCKDB_TYPE_DECIMAL: append_decimal(out, decimal_value(vector, type, row), duckdb_decimal_scale(type), json);
        return;
    case DUCKDB_TYPE_VARCHAR: {
        duckdb_string_t *s = &((duckdb_string_t *)data)[row];
        const char *text = duckdb_string_t_data(s);
        uint32_t len = duckdb_string_t_length(*s);
        if (is_json_alias(type))
            result_format_json_document(out, text, len); /* JSON text, made safe to embed */
        else if (json)
            result_format_json_string(out, text, len);
        else
            strbuf_append(out, text, len);
        return;
    }
    case DUCKDB_TYPE_LIST: case DUCKDB_TYPE_ARRAY: case DUCKDB_TYPE_STRUCT: case DUCKDB_TYPE_MAP:
    case DUCKDB_TYPE_UNION:
        format_nested(out, vector, type, id, row);
        return;
    case DUCKDB_TYPE_SQLNULL:
        if (json)
            strbuf_append_str(out, "null");
        return;
    default:
        format_textual(out, vector, type, id, row, json);
    }
}

void result_format_json(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    format_value(out, vector, type, row, true);
}

void result_format_csv_text(strbuf *out, const char *text, size_t len)
{
    if (memchr(text, ',', len) == NULL && memchr(text, '"', len) == NULL && memchr(text, '\n', len) == NULL &&
        memchr(text, '\r', len) == NULL) {
        strbuf_append(out, text, len);
        return;
    }
    strbuf_append_char(out, '"');
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"')
            strbuf_append_char(out, '"');
        strbuf_append_char(out, text[i]);
    }
    strbuf_append_char(out, '"');
}

void result_format_csv(strbuf *out, duckdb_vector vector, duckdb_logical_type type, idx_t row)
{
    strbuf field;
    strbuf_init(&field);
    format_value(&field, vector, type, row, false);
    result_format_csv_text(out, field.data ? field.data : "", field.len);
    strbuf_free(&field);
}
