/*
 * utf8.h - checking and repairing UTF-8 text at the edges of the program.
 *
 * Every text Agnes hands to JSON (jansson) or binds into DuckDB must be
 * valid UTF-8: both refuse anything else, and an error sentence that cannot
 * be encoded turns a 4xx into a 500.  Bytes arrive unchecked from URLs,
 * form bodies, multipart fields, uploaded files and error messages of other
 * libraries, and a message cut by snprintf at a fixed size can end inside a
 * character.  These helpers are the one definition of "valid" (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF - what jansson
 * and DuckDB both enforce).
 */
#ifndef AGNES_CORE_UTF8_H
#define AGNES_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length in bytes of the valid sequence starting at s (1-4), or 0 when the
 * bytes at s (at most len of them) do not start one. */
size_t utf8_sequence_length(const unsigned char *s, size_t len);

/* True when the len bytes at s are valid UTF-8 (NUL bytes count as valid). */
bool utf8_is_valid(const char *s, size_t len);

/* Cut a NUL-terminated string that a fixed-size buffer may have truncated
 * inside a character back to the last whole character.  Only a damaged tail
 * is removed; invalid bytes elsewhere are left for utf8_sanitize. */
void utf8_trim_partial(char *s);

/* A malloc'd copy of s with every byte that does not belong to a valid
 * sequence replaced by U+FFFD.  NULL only when out of memory. */
char *utf8_sanitize(const char *s);

#endif
