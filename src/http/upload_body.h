/*
 * upload_body.h - a request body streamed to a file instead of memory.
 *
 * Routes flagged ROUTE_UPLOAD receive files that may be far larger than
 * server.max_body_bytes.  server.c hands each piece of the body to
 * upload_body_append() as it arrives; the bytes go straight to a file in
 * DATA_DIR/uploads, so memory use does not depend on the file's size.
 * A multipart/form-data body is parsed by libmicrohttpd's post processor
 * on the way: the part named "file" becomes the file, the small text
 * fields (name, format, description) are kept.  Any other body is the file
 * itself, with the fields taken from the query string by the handler.
 *
 * The file is removed when the body is freed; the handler copies what it
 * keeps.
 */
#ifndef AGNES_HTTP_UPLOAD_BODY_H
#define AGNES_HTTP_UPLOAD_BODY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

struct MHD_Connection;

#define UPLOAD_FIELD_MAX 1024
#define UPLOAD_EXTRA_FIELDS 12
#define UPLOAD_EXTRA_KEY_MAX 32

/* A form field other than file/name/format/description, kept for the
 * handler to use or refuse (an option it does not know is a typo). */
typedef struct http_upload_field {
    char key[UPLOAD_EXTRA_KEY_MAX];
    char value[UPLOAD_FIELD_MAX];
} http_upload_field;

/* What the handler sees (http_request.upload). */
typedef struct http_upload {
    const char *path;   /* the received file */
    uint64_t size;      /* its bytes */
    bool multipart;     /* fields below came from form parts */
    bool has_file;      /* a multipart body carried a "file" part */
    char filename[256]; /* the part's filename, if any */
    char name[UPLOAD_FIELD_MAX];
    char format[64];
    char description[UPLOAD_FIELD_MAX];
    http_upload_field extra[UPLOAD_EXTRA_FIELDS];
    size_t extra_count;
    bool extra_dropped; /* more fields, or a longer key, than kept */
} http_upload;

typedef struct upload_body upload_body;

/* Open DATA_DIR/uploads/incoming-<request_id> for a body of at most
 * max_bytes (file bytes; multipart framing is not counted). */
int upload_body_begin(upload_body **out, struct MHD_Connection *connection, const char *uploads_dir,
                      const char *request_id, uint64_t max_bytes, agnes_error *err);

/* Take the next piece.  Failures are sticky and reported by finish. */
void upload_body_append(upload_body *body, const char *data, size_t size);

/* The body is complete.  AGNES_OK with *out pointing into body;
 * AGNES_ERR_INVALID when it is over max_bytes (upload_body_too_large: answer
 * 413) or is not well-formed multipart - no boundary, a part without a name,
 * no closing boundary - (answer 400: a truncated body must never become a
 * table); AGNES_ERR_IO when it could not be written (disk full: answer 507). */
int upload_body_finish(upload_body *body, const http_upload **out, agnes_error *err);

/* Whether finish failed because the file is larger than max_bytes. */
bool upload_body_too_large(const upload_body *body);

void upload_body_free(upload_body *body);

#endif
