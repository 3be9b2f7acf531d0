#include "engine/query.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "engine/query_protocol.h"

struct query_run {
    query_pool *pool;
    query_slot *slot; /* NULL once given back */
    query_frame_reader reader; /* the worker's channel, for this query's frames */
    strbuf frame;     /* the DATA frame being handed out (with `complete`, the whole body) */
    size_t sent;      /* bytes of `frame` already copied out */
    bool finished;    /* END arrived: the worker is reusable */
    bool complete;    /* the whole body arrived with HEAD (query_run_take_body) */
    const char *truncated_head;
    bool truncated;
    long long rows;
    json_t *shape; /* from HEAD, with request->exact */
};

static void give_back(query_run *run)
{
    /* Bytes after END would be a worker outside the protocol: not reused. */
    if (run->slot != NULL)
        query_pool_release(run->pool, run->slot, run->finished && query_frame_reader_pending(&run->reader) == 0);
    run->slot = NULL;
}

void query_run_free(query_run *run)
{
    if (run == NULL)
        return;
    give_back(run); /* a worker still streaming is killed: nobody reads it */
    query_frame_reader_free(&run->reader);
    strbuf_free(&run->frame);
    json_decref(run->shape);
    free(run);
}

/* The {code, message} of an ERROR or ABORT frame as our error. */
static int frame_error(const strbuf *payload, agnes_error *err)
{
    json_t *error = query_frame_json(payload);
    const char *message = error ? json_string_value(json_object_get(error, "message")) : NULL;
    int code = query_status_from_name(error ? json_string_value(json_object_get(error, "code")) : NULL);
    agnes_error_set(err, code, "%s", message ? message : "the query failed");
    json_decref(error);
    return code;
}

/* The worker went away where a frame was due. */
static int vanished(query_run *run, int rc, agnes_error *err)
{
    if (rc != AGNES_ERR_NOT_FOUND && rc != AGNES_ERR_IO)
        return rc;
    char why[AGNES_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "%s", err->message);
    rc = query_pool_why_ended(run->pool, run->slot, err);
    if (rc == AGNES_ERR_DB)
        agnes_error_set(err, AGNES_ERR_DB, "the query worker ended unexpectedly (%s)", why);
    return rc;
}

/* END arrived (its payload in `end`): the totals are final and the worker,
 * done, goes back - before the last bytes reach the client, so a client
 * that sends its next query the moment this one ends finds the slot free. */
static void end_received(query_run *run, const strbuf *end)
{
    json_t *object = query_frame_json(end);
    run->truncated = json_is_true(json_object_get(object, "truncated"));
    run->rows = (long long)json_integer_value(json_object_get(object, "rows"));
    json_decref(object);
    run->finished = true;
    give_back(run);
}

/* The body and END written with a `complete` HEAD: already sent, so these
 * reads do not wait for the query.  The body stays in run->frame. */
static int read_complete_body(query_run *run, agnes_error *err)
{
    char type = 0;
    strbuf end;
    strbuf_init(&end);
    int rc = vanished(run, query_frame_reader_next(&run->reader, &type, &run->frame, err), err);
    bool body = rc == AGNES_OK && type == QUERY_FRAME_DATA; /* none when the answer is empty */
    if (body)
        rc = vanished(run, query_frame_reader_next(&run->reader, &type, &end, err), err);
    if (rc == AGNES_OK && type != QUERY_FRAME_END)
        rc = agnes_error_set(err, AGNES_ERR_DB, "the query worker sent frame '%c' in a complete answer", type);
    if (rc == AGNES_OK) {
        end_received(run, body ? &end : &run->frame);
        if (!body)
            strbuf_reset(&run->frame); /* it held END */
        run->complete = true;
    }
    strbuf_free(&end);
    return rc;
}

int query_run_start(query_pool *pool, const query_request *request, query_run **out, agnes_error *err)
{
    *out = NULL;
    query_run *run = calloc(1, sizeof *run);
    if (run == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    run->pool = pool;
    strbuf_init(&run->frame);
    query_frame_reader_init(&run->reader, -1);
    int rc = query_pool_acquire(pool, &request->caller, &run->slot, err);
    if (rc == AGNES_OK)
        query_frame_reader_init(&run->reader, run->slot->worker.fd);
    json_t *query = NULL;
    if (rc == AGNES_OK) {
        query = json_pack("{s:s, s:I, s:s, s:s, s:b, s:I}", "sql", request->sql, "limit", (json_int_t)request->limit,
                          "format", query_format_name(request->format), "request_id",
                          request->request_id ? request->request_id : "", "exact", request->exact, "max_bytes",
                          (json_int_t)request->max_bytes);
        rc = query ? query_frame_write_json(run->slot->worker.fd, QUERY_FRAME_QUERY, query, err)
                   : agnes_error_set(err, AGNES_ERR_INVALID, "Field \"sql\" must be valid UTF-8 text.");
        json_decref(query);
    }
    char type = 0;
    if (rc == AGNES_OK)
        rc = vanished(run, query_frame_reader_next(&run->reader, &type, &run->frame, err), err);
    bool complete = false;
    if (rc == AGNES_OK && type == QUERY_FRAME_ERROR) {
        rc = frame_error(&run->frame, err);
        run->finished = true; /* the worker is ready for the next query */
    } else if (rc == AGNES_OK && type == QUERY_FRAME_HEAD) {
        json_t *head = query_frame_json(&run->frame);
        json_t *truncated = json_object_get(head, "truncated");
        run->truncated_head = json_is_true(truncated) ? "true" : json_is_false(truncated) ? "false" : NULL;
        if (json_is_object(json_object_get(head, "shape")))
            run->shape = json_incref(json_object_get(head, "shape"));
        complete = json_is_true(json_object_get(head, "complete"));
        json_decref(head);
    } else if (rc == AGNES_OK) {
        rc = agnes_error_set(err, AGNES_ERR_DB, "the query worker answered with frame '%c'", type);
    }
    strbuf_reset(&run->frame);
    if (rc == AGNES_OK && complete)
        rc = read_complete_body(run, err);
    if (rc != AGNES_OK) {
        query_run_free(run);
        return rc;
    }
    *out = run;
    return AGNES_OK;
}

ssize_t query_run_read(query_run *run, char *buf, size_t max, agnes_error *err)
{
    while (run->sent >= run->frame.len) {
        if (run->slot == NULL)
            return 0; /* END came and the slot is back */
        char type = 0;
        run->sent = 0;
        int rc = vanished(run, query_frame_reader_next(&run->reader, &type, &run->frame, err), err);
        if (rc != AGNES_OK)
            return -1;
        if (type == QUERY_FRAME_DATA)
            continue;
        if (type == QUERY_FRAME_END) {
            end_received(run, &run->frame);
            strbuf_reset(&run->frame);
            return 0;
        }
        if (type == QUERY_FRAME_ABORT)
            frame_error(&run->frame, err);
        else
            agnes_error_set(err, AGNES_ERR_DB, "the query worker sent frame '%c' in a body", type);
        strbuf_reset(&run->frame);
        run->finished = type == QUERY_FRAME_ABORT;
        give_back(run);
        return -1;
    }
    size_t n = run->frame.len - run->sent;
    if (n > max)
        n = max;
    memcpy(buf, run->frame.data + run->sent, n);
    run->sent += n;
    return (ssize_t)n;
}

char *query_run_take_body(query_run *run, size_t *len)
{
    if (!run->complete || run->sent > 0 || run->frame.len == 0 || strbuf_failed(&run->frame))
        return NULL;
    char *body = run->frame.data;
    *len = run->frame.len;
    strbuf_init(&run->frame); /* the caller owns it now */
    run->complete = false;
    return body;
}

const char *query_run_truncated(const query_run *run)
{
    return run->truncated_head;
}

bool query_run_truncated_final(const query_run *run)
{
    return run->truncated;
}

long long query_run_rows(const query_run *run)
{
    return run->rows;
}

const json_t *query_run_shape(const query_run *run)
{
    return run->shape;
}
