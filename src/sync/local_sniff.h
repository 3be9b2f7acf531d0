/*
 * local_sniff.h - what the bytes of an uploaded text file say before DuckDB
 * reads it: the CSV delimiter and decimal separator from its first records,
 * and whether a JSON file holds a number a double cannot keep.
 *
 * Pure byte scanning, no DuckDB: the delimiter is counted here because
 * DuckDB's sniffer reads a ragged comma file or a semicolon file as one
 * column (local_reader.h), and JSON numbers are looked at here because a
 * JSON reader turns them into doubles before anyone can see their digits.
 */
#ifndef AGNES_SYNC_LOCAL_SNIFF_H
#define AGNES_SYNC_LOCAL_SNIFF_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define LOCAL_SNIFF_HEAD_BYTES (64 * 1024)

/* The first bytes of a file. */
typedef struct local_head {
    char *bytes;   /* malloc'd; local_head_free */
    size_t len;
    bool complete; /* the whole file is in bytes (else the last record may be cut) */
} local_head;

/* Read up to LOCAL_SNIFF_HEAD_BYTES of file.  AGNES_ERR_IO / NOMEM. */
int local_head_read(const char *file, local_head *head, agnes_error *err);
void local_head_free(local_head *head);

/* Of , ; tab and | (quote-aware, `quote` a byte or 0 for none): the one
 * that splits the header into two fields or more and gives the same count
 * on most of the first 200 records; ties go to more fields, then to that
 * order.  0 when none splits the header (one column). */
int local_sniff_delimiter(const local_head *head, int quote);

/* ',' when the records after the first write numbers as 1,5 and never as
 * 1.5 (only meaningful when the delimiter is not ','), else '.'. */
int local_sniff_decimal_separator(const local_head *head, int delimiter, int quote);

/* The decimal separator (as local_sniff_decimal_separator) and into
 * *thousands the separator that groups thousands, 0 for none: '.' when a
 * field reads like 1.234,50 or 1.234.567 (then the decimal separator is
 * ','), which no decimal point can be.  Never detected for ',' files. */
int local_sniff_number_format(const local_head *head, int delimiter, int quote, int *thousands);

/* AGNES_ERR_INVALID, naming the line and the number, when the JSON text in
 * file has a fractional number that a double does not keep digit for digit
 * (its shortest round-trip form differs: 0.12345678901234567891); integers
 * are left alone (DuckDB reads those exactly as text).  `format` names the
 * file in the sentence.  AGNES_ERR_IO when it cannot be read. */
int local_sniff_json_numbers(const char *file, const char *format, agnes_error *err);

#endif
