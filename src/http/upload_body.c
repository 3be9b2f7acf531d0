#include "http/upload_body.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

#define POST_BUFFER_BYTES (64 * 1024)

struct upload_body {
    int fd;
    char path[AGNES_PATH_MAX];
    uint64_t max_bytes;
    struct MHD_PostProcessor *post; /* NULL for a raw body */
    http_upload view;
    bool too_large;
    const char *malformed; /* why the multipart body is not well-formed, or NULL */
    int file_parts;        /* "file" parts seen: one file per request */
    int write_errno; /* 0, or the errno of the first failed write */
};

static void write_file_bytes(upload_body *body, const char *data, size_t size)
{
    if (body->too_large || body->write_errno != 0)
        return;
    if (body->view.size + size > body->max_bytes) {
        body->too_large = true;
        return;
    }
    while (size > 0) {
        ssize_t n = write(body->fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            body->write_errno = n < 0 ? errno : EIO;
            return;
        }
        data += n;
        size -= (size_t)n;
        body->view.size += (uint64_t)n;
    }
}

/* Append a piece of a text field, truncating at its buffer's size. */
static void append_field(char *field, size_t field_size, const char *data, size_t size)
{
    size_t have = strlen(field);
    if (have + 1 >= field_size)
        return;
    if (size > field_size - have - 1)
        size = field_size - have - 1;
    memcpy(field + have, data, size);
    field[have + size] = '\0';
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t offset, size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    upload_body *body = cls;
    http_upload *view = &body->view;
    if (key == NULL || key[0] == '\0') { /* a part without Content-Disposition; name="..." */
        body->malformed = "a part has no Content-Disposition header with a name";
        return MHD_NO;
    }
    if (strcmp(key, "file") == 0) {
        if (offset == 0 && ++body->file_parts > 1) {
            body->malformed = "it has more than one part named \"file\"; send one file per request";
            return MHD_NO;
        }
        view->has_file = true;
        if (filename != NULL && view->filename[0] == '\0')
            snprintf(view->filename, sizeof view->filename, "%s", filename);
        write_file_bytes(body, data, size);
    } else if (strcmp(key, "name") == 0) {
        append_field(view->name, sizeof view->name, data, size);
    } else if (strcmp(key, "format") == 0) {
        append_field(view->format, sizeof view->format, data, size);
    } else if (strcmp(key, "description") == 0) {
        append_field(view->description, sizeof view->description, data, size);
    } else {
        size_t i = 0;
        while (i < view->extra_count && strcmp(view->extra[i].key, key) != 0)
            i++;
        if (i == view->extra_count && (i == UPLOAD_EXTRA_FIELDS || strlen(key) >= UPLOAD_EXTRA_KEY_MAX)) {
            view->extra_dropped = true;
            return MHD_YES;
        }
        if (i == view->extra_count)
            snprintf(view->extra[view->extra_count++].key, UPLOAD_EXTRA_KEY_MAX, "%s", key);
        append_field(view->extra[i].value, sizeof view->extra[i].value, data, size);
    }
    return MHD_YES; /* the handler decides about the other fields */
}

int upload_body_begin(upload_body **out, struct MHD_Connection *connection, const char *uploads_dir,
                      const char *request_id, uint64_t max_bytes, agnes_error *err)
{
    *out = NULL;
    upload_body *body = calloc(1, sizeof *body);
    if (body == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    body->max_bytes = max_bytes;
    body->view.path = body->path;
    if (util_format(body->path, sizeof body->path, err, "%s/incoming-%s", uploads_dir, request_id)) {
        free(body);
        return err->code;
    }
    body->fd = open(body->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (body->fd < 0) {
        int rc = agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", body->path, strerror(errno));
        free(body);
        return rc;
    }
    const char *type = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type != NULL && util_starts_with(type, "multipart/form-data")) {
        body->post = MHD_create_post_processor(connection, POST_BUFFER_BYTES, on_part, body);
        body->view.multipart = true;
        if (body->post == NULL) /* libmicrohttpd found no boundary= in the Content-Type */
            body->malformed = "its Content-Type has no boundary";
    }
    *out = body;
    return AGNES_OK;
}

void upload_body_append(upload_body *body, const char *data, size_t size)
{
    if (body->view.multipart) {
        if (body->post == NULL || body->malformed != NULL || body->too_large || body->write_errno != 0)
            return; /* already decided: the rest is read and dropped */
        if (MHD_post_process(body->post, data, size) != MHD_YES && body->malformed == NULL && !body->too_large &&
            body->write_errno == 0)
            body->malformed = "libmicrohttpd could not parse it";
    } else {
        write_file_bytes(body, data, size);
    }
}

int upload_body_finish(upload_body *body, const http_upload **out, agnes_error *err)
{
    *out = NULL;
    if (body->post != NULL) {
        /* MHD_NO: the body ended inside a part or before its closing
         * boundary - a truncated upload, which must not become a table. */
        if (MHD_destroy_post_processor(body->post) != MHD_YES && body->malformed == NULL && !body->too_large &&
            body->write_errno == 0)
            body->malformed = "it ends before its closing boundary (--BOUNDARY--): it was cut off";
        body->post = NULL;
    }
    if (body->too_large)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "The file is larger than the %llu bytes this server accepts. Split it, or ask an admin "
                               "to raise the limit (upload.max_bytes for tables, upload.max_session_bytes for session logs).",
                               (unsigned long long)body->max_bytes);
    if (body->malformed != NULL)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "The multipart/form-data body is malformed: %s. Send the file as a part named "
                               "\"file\" (curl -F file=@data.csv), or send the raw file as the body.",
                               body->malformed);
    if (body->write_errno != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot store the upload in %s: %s", body->path,
                               strerror(body->write_errno));
    *out = &body->view;
    return AGNES_OK;
}

bool upload_body_too_large(const upload_body *body)
{
    return body != NULL && body->too_large;
}

void upload_body_free(upload_body *body)
{
    if (body == NULL)
        return;
    if (body->post != NULL)
        MHD_destroy_post_processor(body->post);
    if (body->fd >= 0)
        close(body->fd);
    unlink(body->path);
    free(body);
}
