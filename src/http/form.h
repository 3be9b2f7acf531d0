/*
 * form.h - read fields of an application/x-www-form-urlencoded body (HTML
 * forms).  Decoding uses libmicrohttpd's own unescaper.
 */
#ifndef AGNES_HTTP_FORM_H
#define AGNES_HTTP_FORM_H

#include <stdbool.h>
#include <stddef.h>

/* Copy the decoded value of `name` into out; false (and out empty) when it is
 * absent, too long, holding an encoded NUL (%00), or not UTF-8 once decoded. */
bool form_field(const char *body, const char *name, char *out, size_t out_size);

#endif
