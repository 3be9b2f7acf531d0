#include "sync/local_sniff.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD_RECORDS 200
/* Significant digits every DOUBLE reproduces exactly (DBL_DIG). */
#define DOUBLE_EXACT_DIGITS 15

static const char candidates[] = {',', ';', '\t', '|'};

/* ---- the first records of a CSV, split quote-aware -------------------- */

typedef void (*field_fn)(void *ctx, size_t record, const char *text, size_t len);

/* Walk the records of head (complete: the whole file is there; else the
 * last, possibly cut, record is ignored), calling on_field for every field
 * and returning how many records were seen.  fields[r] gets the number of
 * fields of record r (when fields is not NULL).  Blank lines are skipped,
 * as readers do. */
static size_t scan_records(const char *head, size_t len, bool complete, int delimiter, int quote, field_fn on_field,
                           void *ctx, size_t *fields)
{
    size_t records = 0, start = 0, count = 0;
    bool quoted = false;
    if (!complete) { /* cut at the last line break: the tail may be half a record */
        while (len > 0 && head[len - 1] != '\n')
            len--;
    }
    for (size_t i = 0; i <= len && records < HEAD_RECORDS; i++) {
        char c = i < len ? head[i] : '\n';
        if (quote > 0 && c == (char)quote) {
            quoted = !quoted; /* a doubled quote toggles twice */
            continue;
        }
        if (quoted || (c != (char)delimiter && c != '\n'))
            continue;
        size_t end = i;
        if (c == '\n' && end > start && head[end - 1] == '\r')
            end--;
        bool blank = c == '\n' && count == 0 && end == start;
        if (!blank) {
            if (on_field)
                on_field(ctx, records, head + start, end - start);
            count++;
        }
        start = i + 1;
        if (c == '\n') {
            if (count > 0) {
                if (fields)
                    fields[records] = count;
                records++;
            }
            count = 0;
            if (i == len)
                break;
        }
    }
    return records;
}

/* The candidate whose field count is the same on most records (a header
 * with at least two fields); ties go to more fields, then to the order of
 * `candidates`.  0 when no candidate splits the header: one column. */
static int detect_delimiter(const char *head, size_t len, bool complete, int quote)
{
    size_t *fields = calloc(HEAD_RECORDS, sizeof *fields);
    int best = 0;
    size_t best_consistent = 0, best_fields = 0;
    if (fields == NULL)
        return ',';
    for (size_t c = 0; c < sizeof candidates; c++) {
        size_t records = scan_records(head, len, complete, candidates[c], quote, NULL, NULL, fields);
        if (records == 0 || fields[0] < 2)
            continue;
        size_t consistent = 0;
        for (size_t r = 0; r < records; r++)
            consistent += fields[r] == fields[0];
        if (consistent > best_consistent || (consistent == best_consistent && fields[0] > best_fields)) {
            best = candidates[c];
            best_consistent = consistent;
            best_fields = fields[0];
        }
    }
    free(fields);
    return best;
}

typedef struct decimal_count {
    int quote;
    size_t comma; /* fields like 1,5 */
    size_t dot;   /* fields like 1.5 */
    size_t grouped_dot; /* fields like 1.234,50 or 1.234.567: '.' groups thousands (never a decimal point) */
} decimal_count;

/* [+-]?d{1,3}(.ddd)+(,d+)? with at least two groups or a comma fraction:
 * "1.234,50" and "1.234.567" cannot be decimal points; "1.234" alone is
 * ambiguous and is not counted. */
static bool looks_grouped_by_dot(const char *s, size_t len)
{
    size_t i = 0, lead = 0, groups = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, lead++;
    if (lead == 0 || lead > 3)
        return false;
    while (i + 3 < len + 0 && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9' && s[i + 2] >= '0' &&
           s[i + 2] <= '9' && s[i + 3] >= '0' && s[i + 3] <= '9' && (i + 4 == len || s[i + 4] < '0' || s[i + 4] > '9'))
        i += 4, groups++;
    if (groups == 0)
        return false;
    bool fraction = false;
    if (i < len && s[i] == ',') {
        size_t after = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            after++;
        fraction = after > 0;
    }
    return i == len && (groups >= 2 || fraction);
}

/* [+-]?digits SEP digits (SEP ',') or [+-]?digits? '.' digits. */
static bool looks_decimal(const char *s, size_t len, char separator)
{
    size_t i = 0, before = 0, after = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, before++;
    if (i >= len || s[i] != separator)
        return false;
    for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        after++;
    return i == len && after > 0 && (before > 0 || separator == '.');
}

static void count_decimals(void *ctx, size_t record, const char *text, size_t len)
{
    decimal_count *count = ctx;
    if (record == 0) /* a header, or not: names never decide this */
        return;
    if (len >= 2 && count->quote > 0 && text[0] == (char)count->quote && text[len - 1] == (char)count->quote)
        text++, len -= 2;
    count->comma += looks_decimal(text, len, ',');
    count->dot += looks_decimal(text, len, '.');
    count->grouped_dot += looks_grouped_by_dot(text, len);
}

int local_head_read(const char *file, local_head *head, agnes_error *err)
{
    memset(head, 0, sizeof *head);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", file, strerror(errno));
    head->bytes = malloc(LOCAL_SNIFF_HEAD_BYTES);
    if (head->bytes == NULL) {
        close(fd);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    while (head->len < LOCAL_SNIFF_HEAD_BYTES) {
        ssize_t n = read(fd, head->bytes + head->len, LOCAL_SNIFF_HEAD_BYTES - head->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", file, strerror(errno));
            close(fd);
            local_head_free(head);
            return rc;
        }
        if (n == 0)
            break;
        head->len += (size_t)n;
    }
    char extra;
    head->complete = head->len < LOCAL_SNIFF_HEAD_BYTES || read(fd, &extra, 1) == 0;
    close(fd);
    return AGNES_OK;
}

void local_head_free(local_head *head)
{
    free(head->bytes);
    memset(head, 0, sizeof *head);
}

int local_sniff_delimiter(const local_head *head, int quote)
{
    return detect_delimiter(head->bytes, head->len, head->complete, quote);
}

int local_sniff_decimal_separator(const local_head *head, int delimiter, int quote)
{
    int thousands;
    return local_sniff_number_format(head, delimiter, quote, &thousands);
}

int local_sniff_number_format(const local_head *head, int delimiter, int quote, int *thousands)
{
    decimal_count count = {.quote = quote};
    scan_records(head->bytes, head->len, head->complete, delimiter, quote, count_decimals, &count, NULL);
    *thousands = 0;
    if (delimiter == ',')
        return '.';
    /* "1.234,50" settles both: a dot that groups thousands is no decimal
     * point, so the "1.234"s beside it do not vote for one. */
    if (count.grouped_dot > 0) {
        *thousands = '.';
        return ',';
    }
    return count.comma > 0 && count.dot == 0 ? ',' : '.';
}

/* ---- JSON numbers that a double cannot hold ---------------------------- */

/* Significant digits of a decimal number and its decimal exponent:
 * "0.00120" -> "12", -3.  False when text is not a plain number. */
static bool normalize_number(const char *text, char *digits, size_t size, long *exponent)
{
    const char *p = text;
    size_t n = 0;
    long point = 0, exp = 0;
    bool seen_point = false, seen_digit = false;
    if (*p == '-' || *p == '+')
        p++;
    for (; *p && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            seen_point = true;
            continue;
        }
        if (*p < '0' || *p > '9')
            return false;
        if (n == 0 && *p == '0') { /* leading zeros only move the point */
            if (seen_point)
                point--;
            continue;
        }
        seen_digit = true;
        if (n + 1 >= size)
            return false;
        digits[n++] = *p;
        if (!seen_point)
            point++;
    }
    if (*p == 'e' || *p == 'E')
        exp = strtol(p + 1, NULL, 10);
    while (n > 0 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *exponent = seen_digit ? point + exp : 0;
    return true;
}

/* True when a JSON number token keeps every digit as a double: its
 * shortest round-trip form (what DuckDB prints) has the same digits. */
static bool double_keeps(const char *token)
{
    char want[800], got[64], printed[64];
    long want_exp, got_exp;
    if (!normalize_number(token, want, sizeof want, &want_exp))
        return false;
    if (strlen(want) <= DOUBLE_EXACT_DIGITS)
        return true;
    double value = strtod(token, NULL);
    if (!isfinite(value))
        return false;
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(printed, sizeof printed, "%.*e", precision - 1, value);
        if (strtod(printed, NULL) == value)
            break;
    }
    return normalize_number(printed, got, sizeof got, &got_exp) && strcmp(want, got) == 0 && want_exp == got_exp;
}

/* A streaming look at the number tokens of a JSON text: outside strings,
 * every '-' or digit starts a number (keywords hold no digits). */
typedef struct number_scan {
    bool in_string, escaped, in_number, fractional, overflow;
    char token[800];
    size_t token_len;
    long long line, token_line;
} number_scan;

/* Feed one byte; false when a number that just ended loses digits. */
static bool scan_byte(number_scan *s, char c)
{
    if (s->in_number) {
        if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
            s->fractional = s->fractional || c == '.' || c == 'e' || c == 'E';
            if (s->token_len + 1 < sizeof s->token)
                s->token[s->token_len++] = c;
            else
                s->overflow = true;
            return true;
        }
        s->in_number = false;
        s->token[s->token_len] = '\0';
        if (s->fractional && (s->overflow || !double_keeps(s->token)))
            return false;
    }
    if (s->in_string) {
        if (s->escaped)
            s->escaped = false;
        else if (c == '\\')
            s->escaped = true;
        else if (c == '"')
            s->in_string = false;
    } else if (c == '"') {
        s->in_string = true;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        s->in_number = true;
        s->fractional = s->overflow = false;
        s->token[0] = c;
        s->token_len = 1;
        s->token_line = s->line;
    }
    if (c == '\n')
        s->line++;
    return true;
}

/* Refuse a JSON file holding a fractional number that would lose digits
 * (JSON readers, DuckDB's too, keep such numbers as doubles; integers are
 * read exactly as text and typed by widen_doubles). */
int local_sniff_json_numbers(const char *file, const char *format, agnes_error *err)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", file, strerror(errno));
    char *buf = malloc(LOCAL_SNIFF_HEAD_BYTES);
    number_scan *scan = calloc(1, sizeof *scan);
    bool keeps = true;
    int rc = AGNES_OK;
    if (buf == NULL || scan == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    scan->line = 1;
    for (;;) {
        ssize_t n = read(fd, buf, LOCAL_SNIFF_HEAD_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", file, strerror(errno));
            goto done;
        }
        for (ssize_t i = 0; i < n && keeps; i++)
            keeps = scan_byte(scan, buf[i]);
        if (n == 0 && keeps)
            keeps = scan_byte(scan, ' '); /* the file may end inside a number */
        if (n == 0 || !keeps)
            break;
    }
    if (!keeps)
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "Line %lld of the %s has the number %.60s%s, which JSON readers keep only as a double, "
                             "losing digits. Nothing was changed. Write such numbers as strings and pass "
                             "types={\"<column>\": \"DECIMAL(38,<scale>)\"}, or upload the data as CSV, where they "
                             "become DECIMAL.",
                             scan->token_line, format, scan->token, scan->overflow || scan->token_len > 60 ? "..." : "");
done:
    free(buf);
    free(scan);
    close(fd);
    return rc;
}

