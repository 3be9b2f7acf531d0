#include "engine/query_protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/utf8.h"

static int write_all(int fd, const void *data, size_t len, agnes_error *err)
{
    const char *p = data;
    while (len > 0) {
        /* send(): a worker killed mid-query must not SIGPIPE the server. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return agnes_error_set(err, AGNES_ERR_IO, "cannot write to the query worker channel: %s",
                                   strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return AGNES_OK;
}

/* Read exactly len bytes; *got tells how many arrived before an end-of-file. */
static int read_all(int fd, void *data, size_t len, size_t *got, agnes_error *err)
{
    char *p = data;
    *got = 0;
    while (*got < len) {
        ssize_t n = read(fd, p + *got, len - *got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return agnes_error_set(err, AGNES_ERR_IO, "cannot read the query worker channel: %s", strerror(errno));
        }
        if (n == 0)
            return *got == 0 ? agnes_error_set(err, AGNES_ERR_NOT_FOUND, "the query worker channel closed")
                             : agnes_error_set(err, AGNES_ERR_IO, "the query worker channel closed in the middle "
                                                                  "of a frame");
        *got += (size_t)n;
    }
    return AGNES_OK;
}

static void frame_header(unsigned char header[5], char type, size_t len)
{
    header[0] = (unsigned char)type;
    header[1] = (unsigned char)(len & 0xff);
    header[2] = (unsigned char)((len >> 8) & 0xff);
    header[3] = (unsigned char)((len >> 16) & 0xff);
    header[4] = (unsigned char)((len >> 24) & 0xff);
}

int query_frame_write(int fd, char type, const void *data, size_t len, agnes_error *err)
{
    if (len > QUERY_FRAME_MAX)
        return agnes_error_set(err, AGNES_ERR_INVALID, "a query worker frame of %zu bytes is over the %u limit", len,
                               QUERY_FRAME_MAX);
    unsigned char header[5];
    frame_header(header, type, len);
    if (len > 0 && len <= 64 * 1024) {
        /* One write for small frames: fewer wake-ups of the reader. */
        char buf[5 + 64 * 1024];
        memcpy(buf, header, 5);
        memcpy(buf + 5, data, len);
        return write_all(fd, buf, 5 + len, err);
    }
    if (write_all(fd, header, sizeof header, err) != AGNES_OK)
        return err->code;
    return len > 0 ? write_all(fd, data, len, err) : AGNES_OK;
}

int query_frame_write_json(int fd, char type, const json_t *object, agnes_error *err)
{
    char *text = json_dumps(object, JSON_COMPACT);
    if (text == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = query_frame_write(fd, type, text, strlen(text), err);
    free(text);
    return rc;
}

int query_frame_write_error(int fd, char type, int code, const char *message, agnes_error *err)
{
    json_t *object = json_pack("{s:s, s:s}", "code", agnes_status_name(code), "message", message ? message : "");
    if (object == NULL) /* message was not UTF-8: say what we can */
        object = json_pack("{s:s, s:s}", "code", agnes_status_name(code), "message", "the query failed");
    if (object == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = query_frame_write_json(fd, type, object, err);
    json_decref(object);
    return rc;
}

int query_frame_read(int fd, char *type, strbuf *payload, agnes_error *err)
{
    unsigned char header[5];
    size_t got = 0;
    strbuf_reset(payload);
    int rc = read_all(fd, header, sizeof header, &got, err);
    if (rc != AGNES_OK)
        return rc; /* AGNES_ERR_NOT_FOUND: closed before the frame began */
    size_t len = (size_t)header[1] | (size_t)header[2] << 8 | (size_t)header[3] << 16 | (size_t)header[4] << 24;
    if (len > QUERY_FRAME_MAX)
        return agnes_error_set(err, AGNES_ERR_IO, "the query worker sent a frame of %zu bytes", len);
    *type = (char)header[0];
    if (len == 0)
        return AGNES_OK;
    /* Grow once to the frame's size, then read straight into the buffer. */
    strbuf_append(payload, "", 0);
    char *scratch = malloc(len + 1);
    if (scratch == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    rc = read_all(fd, scratch, len, &got, err);
    if (rc == AGNES_ERR_NOT_FOUND)
        rc = agnes_error_set(err, AGNES_ERR_IO, "the query worker channel closed in the middle of a frame");
    if (rc == AGNES_OK)
        strbuf_append(payload, scratch, len);
    free(scratch);
    if (rc == AGNES_OK && strbuf_failed(payload))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    return rc;
}

int query_frame_append(strbuf *batch, char type, const void *data, size_t len, agnes_error *err)
{
    if (len > QUERY_FRAME_MAX)
        return agnes_error_set(err, AGNES_ERR_INVALID, "a query worker frame of %zu bytes is over the %u limit", len,
                               QUERY_FRAME_MAX);
    unsigned char header[5];
    frame_header(header, type, len);
    strbuf_append(batch, (const char *)header, sizeof header);
    if (len > 0)
        strbuf_append(batch, data, len);
    return strbuf_failed(batch) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

int query_frame_append_json(strbuf *batch, char type, const json_t *object, agnes_error *err)
{
    char *text = json_dumps(object, JSON_COMPACT);
    if (text == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = query_frame_append(batch, type, text, strlen(text), err);
    free(text);
    return rc;
}

int query_frame_send(int fd, strbuf *batch, agnes_error *err)
{
    int rc = write_all(fd, batch->data, batch->len, err);
    strbuf_reset(batch);
    return rc;
}

void query_frame_reader_init(query_frame_reader *reader, int fd)
{
    memset(reader, 0, sizeof *reader);
    reader->fd = fd;
}

void query_frame_reader_free(query_frame_reader *reader)
{
    free(reader->buffer);
    memset(reader, 0, sizeof *reader);
    reader->fd = -1;
}

size_t query_frame_reader_pending(const query_frame_reader *reader)
{
    return reader->end - reader->start;
}

/* Until `need` bytes are buffered from reader->start.  EOF with nothing
 * buffered is AGNES_ERR_NOT_FOUND (the worker ended between frames). */
static int reader_fill(query_frame_reader *reader, size_t need, agnes_error *err)
{
    if (reader->capacity - reader->start < need) {
        /* Move what is left to the front, then grow if the frame is bigger. */
        size_t pending = reader->end - reader->start;
        if (pending > 0 && reader->start > 0)
            memmove(reader->buffer, reader->buffer + reader->start, pending);
        reader->start = 0;
        reader->end = pending;
        if (reader->capacity < need) {
            size_t capacity = need < 64 * 1024 ? 64 * 1024 : need;
            char *grown = realloc(reader->buffer, capacity);
            if (grown == NULL)
                return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
            reader->buffer = grown;
            reader->capacity = capacity;
        }
    }
    while (reader->end - reader->start < need) {
        ssize_t n = read(reader->fd, reader->buffer + reader->end, reader->capacity - reader->end);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return agnes_error_set(err, AGNES_ERR_IO, "cannot read the query worker channel: %s", strerror(errno));
        }
        if (n == 0)
            return reader->end == reader->start
                       ? agnes_error_set(err, AGNES_ERR_NOT_FOUND, "the query worker channel closed")
                       : agnes_error_set(err, AGNES_ERR_IO, "the query worker channel closed in the middle of a "
                                                            "frame");
        reader->end += (size_t)n;
    }
    return AGNES_OK;
}

int query_frame_reader_next(query_frame_reader *reader, char *type, strbuf *payload, agnes_error *err)
{
    strbuf_reset(payload);
    int rc = reader_fill(reader, 5, err);
    if (rc != AGNES_OK)
        return rc;
    const unsigned char *header = (const unsigned char *)reader->buffer + reader->start;
    size_t len = (size_t)header[1] | (size_t)header[2] << 8 | (size_t)header[3] << 16 | (size_t)header[4] << 24;
    if (len > QUERY_FRAME_MAX)
        return agnes_error_set(err, AGNES_ERR_IO, "the query worker sent a frame of %zu bytes", len);
    *type = (char)header[0];
    if ((rc = reader_fill(reader, 5 + len, err)) != AGNES_OK)
        return rc == AGNES_ERR_NOT_FOUND ? agnes_error_set(err, AGNES_ERR_IO, "the query worker channel closed in the "
                                                                              "middle of a frame")
                                         : rc;
    if (len > 0)
        strbuf_append(payload, reader->buffer + reader->start + 5, len);
    reader->start += 5 + len;
    if (reader->start == reader->end)
        reader->start = reader->end = 0;
    return strbuf_failed(payload) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

json_t *query_frame_json(const strbuf *payload)
{
    if (payload->len == 0)
        return NULL;
    json_t *object = json_loadb(payload->data, payload->len, 0, NULL);
    if (object != NULL && !json_is_object(object)) {
        json_decref(object);
        object = NULL;
    }
    return object;
}

int query_status_from_name(const char *name)
{
    static const int codes[] = {AGNES_ERR_INVALID, AGNES_ERR_IO,       AGNES_ERR_NOMEM,     AGNES_ERR_DB,
                                AGNES_ERR_CONFIG,  AGNES_ERR_STATE,    AGNES_ERR_NETWORK,   AGNES_ERR_NOT_FOUND,
                                AGNES_ERR_FORBIDDEN, AGNES_ERR_TIMEOUT, AGNES_ERR_BUSY};
    for (size_t i = 0; name != NULL && i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(agnes_status_name(codes[i]), name) == 0)
            return codes[i];
    return AGNES_ERR_DB;
}

void query_utf8_truncate(char *text, size_t max)
{
    size_t len = strlen(text);
    if (len >= max) {
        size_t cut = max - 1;
        /* Step back over continuation bytes (10xxxxxx) to a sequence start. */
        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
            cut--;
        text[cut] = '\0';
        return;
    }
    /* Text already cut by someone else (snprintf into a fixed buffer) may
     * end inside a sequence: drop the incomplete tail. */
    size_t start = len;
    while (start > 0 && len - start < 4 && ((unsigned char)text[start - 1] & 0xC0) == 0x80)
        start--;
    if (start == 0)
        return;
    unsigned char lead = (unsigned char)text[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (start - 1) < need)
        text[start - 1] = '\0';
}

void query_utf8_sanitize(char *text)
{
    unsigned char *p = (unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence_length(p + i, n - i);
        if (len == 0) {
            p[i++] = '?';
            continue;
        }
        i += len;
    }
}
