/*
 * strbuf.h - a growable byte buffer for building output piece by piece.
 *
 * Query results are formatted row by row into one of these and handed to
 * the network a slice at a time, so the formatting code never needs to know
 * how large the result is.  An allocation failure is sticky: later appends
 * do nothing and strbuf_failed() reports it once, at the end, instead of
 * every caller checking every append.
 */
#ifndef AGNES_CORE_STRBUF_H
#define AGNES_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct strbuf {
    char *data; /* NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed; contents are incomplete */
} strbuf;

void strbuf_init(strbuf *b);
void strbuf_free(strbuf *b);
/* Forget the contents, keep the allocation. */
void strbuf_reset(strbuf *b);
bool strbuf_failed(const strbuf *b);

void strbuf_append(strbuf *b, const char *data, size_t len);
void strbuf_append_str(strbuf *b, const char *s);
void strbuf_append_char(strbuf *b, char c);
void strbuf_appendf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append `len` bytes of UTF-8 text as a JSON string literal, quotes included. */
void strbuf_append_json_string(strbuf *b, const char *s, size_t len);

#endif
