/*
 * arrow_ipc.h - Arrow IPC stream bytes from Arrow C data interface arrays.
 *
 * DuckDB's C API turns a result chunk into an ArrowArray (the C data
 * interface); the wire format clients read (`pyarrow.ipc.open_stream`,
 * `apache-arrow`'s RecordBatchReader) is the IPC stream: a Schema message,
 * one RecordBatch message per chunk, and an end-of-stream marker.  No Arrow
 * library is packaged for Debian 12, so the two flatbuffer messages are
 * written here (arrow/format/Schema.fbs and Message.fbs, metadata V5,
 * little-endian, no compression, no dictionaries).
 *
 * Supported: null, bool, signed/unsigned integers, half/float/double,
 * decimal, utf8/binary (and large), fixed-size binary, date, time,
 * timestamp (with zone), interval, list, large list, fixed-size list,
 * struct and map.  Anything else (dictionaries, views, unions) is refused
 * by arrow_ipc_check() before a byte is sent.
 */
#ifndef AGNES_ENGINE_ARROW_IPC_H
#define AGNES_ENGINE_ARROW_IPC_H

#include <stdint.h>

#include "core/error.h"
#include "core/strbuf.h"

/* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html):
 * an ABI, declared by every producer and consumer. */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
#define ARROW_FLAG_NULLABLE 2
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};
#endif

/* AGNES_OK when every column of `schema` (a struct of columns) can be
 * written; otherwise AGNES_ERR_INVALID naming the column and the CAST. */
int arrow_ipc_check(const struct ArrowSchema *schema, agnes_error *err);

/* Append the Schema message. */
int arrow_ipc_write_schema(strbuf *out, const struct ArrowSchema *schema, agnes_error *err);

/* Append one RecordBatch message for `array` (a struct array, one child per column). */
int arrow_ipc_write_batch(strbuf *out, const struct ArrowSchema *schema, const struct ArrowArray *array,
                          agnes_error *err);

/* Append the end-of-stream marker. */
void arrow_ipc_write_end(strbuf *out);

#endif
