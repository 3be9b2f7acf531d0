#include "engine/arrow_ipc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a minimal flatbuffer builder ---------------------------------------
 *
 * Flatbuffers are built back to front: children first, at the end of the
 * buffer, so every offset a parent stores points forward.  An object's
 * handle is the number of bytes written when it was finished (its distance
 * from the end); the layout rules follow flatbuffers' own builder.
 */

#define FB_MAX_FIELDS 8

typedef struct fb {
    uint8_t *buf;
    size_t cap;
    size_t used; /* data lives in buf[cap - used, cap) */
    size_t min_align;
    bool failed;
    size_t table_start;
    uint32_t field_at[FB_MAX_FIELDS]; /* handle of each field of the open table; 0 = absent */
} fb;

static bool fb_reserve(fb *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->cap - b->used >= n)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->used < n)
        cap *= 2;
    uint8_t *grown = malloc(cap);
    if (grown == NULL) {
        b->failed = true;
        return false;
    }
    if (b->used)
        memcpy(grown + cap - b->used, b->buf + b->cap - b->used, b->used);
    free(b->buf);
    b->buf = grown;
    b->cap = cap;
    return true;
}

static void fb_push(fb *b, const void *data, size_t n)
{
    if (n == 0 || !fb_reserve(b, n))
        return;
    b->used += n;
    memcpy(b->buf + b->cap - b->used, data, n);
}

static void fb_zeros(fb *b, size_t n)
{
    if (n == 0 || !fb_reserve(b, n))
        return;
    b->used += n;
    memset(b->buf + b->cap - b->used, 0, n);
}

/* Pad so that after `extra` more bytes the size is a multiple of `align`. */
static void fb_prealign(fb *b, size_t extra, size_t align)
{
    if (align > b->min_align)
        b->min_align = align;
    fb_zeros(b, (~(b->used + extra) + 1) & (align - 1));
}

static void fb_push_u32(fb *b, uint32_t v)
{
    fb_prealign(b, 0, 4);
    fb_push(b, &v, 4);
}

/* A uoffset to `handle`, written at the current position. */
static void fb_push_ref(fb *b, uint32_t handle)
{
    fb_prealign(b, 0, 4);
    fb_push_u32(b, (uint32_t)(b->used + 4 - handle));
}

static uint32_t fb_string(fb *b, const char *s)
{
    size_t len = strlen(s);
    fb_prealign(b, len + 1, 4);
    fb_zeros(b, 1);
    fb_push(b, s, len);
    fb_push_u32(b, (uint32_t)len);
    return (uint32_t)b->used;
}

static uint32_t fb_vector_of_refs(fb *b, const uint32_t *handles, size_t n)
{
    fb_prealign(b, n * 4, 4);
    for (size_t i = n; i > 0; i--)
        fb_push_ref(b, handles[i - 1]);
    fb_push_u32(b, (uint32_t)n);
    return (uint32_t)b->used;
}

/* A vector of 16-byte structs of two int64 (FieldNode, Buffer). */
static uint32_t fb_vector_of_pairs(fb *b, const int64_t *pairs, size_t n)
{
    fb_prealign(b, n * 16, 4);
    fb_prealign(b, n * 16, 8);
    fb_push(b, pairs, n * 16);
    fb_push_u32(b, (uint32_t)n);
    return (uint32_t)b->used;
}

static void fb_start_table(fb *b)
{
    memset(b->field_at, 0, sizeof b->field_at);
    b->table_start = b->used;
}

static void fb_add_scalar(fb *b, int id, const void *value, size_t size)
{
    fb_prealign(b, 0, size);
    fb_push(b, value, size);
    b->field_at[id] = (uint32_t)b->used;
}

static void fb_add_u8(fb *b, int id, uint8_t v) { fb_add_scalar(b, id, &v, 1); }
static void fb_add_i16(fb *b, int id, int16_t v) { fb_add_scalar(b, id, &v, 2); }
static void fb_add_i32(fb *b, int id, int32_t v) { fb_add_scalar(b, id, &v, 4); }
static void fb_add_i64(fb *b, int id, int64_t v) { fb_add_scalar(b, id, &v, 8); }

static void fb_add_ref(fb *b, int id, uint32_t handle)
{
    fb_push_ref(b, handle);
    b->field_at[id] = (uint32_t)b->used;
}

static uint32_t fb_end_table(fb *b)
{
    int32_t placeholder = 0;
    fb_prealign(b, 0, 4);
    fb_push(b, &placeholder, 4);
    uint32_t object = (uint32_t)b->used;
    int fields = 0;
    for (int i = 0; i < FB_MAX_FIELDS; i++)
        if (b->field_at[i])
            fields = i + 1;
    /* The vtable: [its size][object size][offset of each field], all u16. */
    for (int i = fields - 1; i >= 0; i--) {
        uint16_t offset = b->field_at[i] ? (uint16_t)(object - b->field_at[i]) : 0;
        fb_push(b, &offset, 2);
    }
    uint16_t object_size = (uint16_t)(object - b->table_start), vtable_size = (uint16_t)(4 + 2 * fields);
    fb_push(b, &object_size, 2);
    fb_push(b, &vtable_size, 2);
    if (!b->failed) {
        int32_t to_vtable = (int32_t)(b->used - object); /* table position minus vtable position */
        memcpy(b->buf + b->cap - object, &to_vtable, 4);
    }
    return object;
}

static void fb_finish(fb *b, uint32_t root)
{
    fb_prealign(b, 4, b->min_align > 4 ? b->min_align : 4);
    fb_push_ref(b, root);
}

/* ---- Arrow types ------------------------------------------------------- */

enum arrow_type_id {
    T_NULL = 1, T_INT = 2, T_FLOAT = 3, T_BINARY = 4, T_UTF8 = 5, T_BOOL = 6, T_DECIMAL = 7, T_DATE = 8,
    T_TIME = 9, T_TIMESTAMP = 10, T_INTERVAL = 11, T_LIST = 12, T_STRUCT = 13, T_FIXED_BINARY = 15,
    T_FIXED_LIST = 16, T_MAP = 17, T_LARGE_BINARY = 19, T_LARGE_UTF8 = 20, T_LARGE_LIST = 21,
};

/* How a format string maps to the IPC type and the buffers it carries. */
typedef struct arrow_layout {
    int type;
    int bit_width;  /* per value in the data buffer (0: none) */
    int offsets;    /* 4 or 8 when there is an offsets buffer, else 0 */
    bool has_data;  /* a variable-length data buffer follows the offsets */
    int unit;       /* time unit / date unit / interval unit / float precision */
    bool is_signed;
    int precision, scale, fixed; /* decimal; fixed size binary / list */
    const char *timezone;
} arrow_layout;

static bool parse_layout(const char *f, arrow_layout *l)
{
    memset(l, 0, sizeof *l);
    static const struct {
        char code;
        int bits;
        bool is_signed;
    } ints[] = {{'c', 8, true},  {'C', 8, false},  {'s', 16, true}, {'S', 16, false},
                {'i', 32, true}, {'I', 32, false}, {'l', 64, true}, {'L', 64, false}};
    if (f[0] != '\0' && f[1] == '\0') {
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
            if (f[0] == ints[i].code) {
                *l = (arrow_layout){.type = T_INT, .bit_width = ints[i].bits, .is_signed = ints[i].is_signed};
                return true;
            }
        switch (f[0]) {
        case 'n': l->type = T_NULL; return true;
        case 'b': l->type = T_BOOL; l->bit_width = 1; return true;
        case 'e': *l = (arrow_layout){.type = T_FLOAT, .bit_width = 16, .unit = 0}; return true;
        case 'f': *l = (arrow_layout){.type = T_FLOAT, .bit_width = 32, .unit = 1}; return true;
        case 'g': *l = (arrow_layout){.type = T_FLOAT, .bit_width = 64, .unit = 2}; return true;
        case 'z': *l = (arrow_layout){.type = T_BINARY, .offsets = 4, .has_data = true}; return true;
        case 'Z': *l = (arrow_layout){.type = T_LARGE_BINARY, .offsets = 8, .has_data = true}; return true;
        case 'u': *l = (arrow_layout){.type = T_UTF8, .offsets = 4, .has_data = true}; return true;
        case 'U': *l = (arrow_layout){.type = T_LARGE_UTF8, .offsets = 8, .has_data = true}; return true;
        default: return false;
        }
    }
    if (strncmp(f, "d:", 2) == 0) {
        int bits = 128;
        if (sscanf(f + 2, "%d,%d,%d", &l->precision, &l->scale, &bits) < 2 || (bits != 128 && bits != 256))
            return false;
        l->type = T_DECIMAL;
        l->bit_width = bits;
        return true;
    }
    if (strncmp(f, "w:", 2) == 0) {
        l->type = T_FIXED_BINARY;
        l->fixed = atoi(f + 2);
        l->bit_width = l->fixed * 8;
        return l->fixed > 0;
    }
    if (strncmp(f, "+w:", 3) == 0) {
        l->type = T_FIXED_LIST;
        l->fixed = atoi(f + 3);
        return l->fixed > 0;
    }
    if (strcmp(f, "+l") == 0 || strcmp(f, "+L") == 0 || strcmp(f, "+m") == 0) {
        l->type = f[1] == 'l' ? T_LIST : f[1] == 'L' ? T_LARGE_LIST : T_MAP;
        l->offsets = f[1] == 'L' ? 8 : 4;
        return true;
    }
    if (strcmp(f, "+s") == 0) {
        l->type = T_STRUCT;
        return true;
    }
    if (strcmp(f, "tdD") == 0 || strcmp(f, "tdm") == 0) {
        *l = (arrow_layout){.type = T_DATE, .bit_width = f[2] == 'D' ? 32 : 64, .unit = f[2] == 'D' ? 0 : 1};
        return true;
    }
    static const char units[] = "smun"; /* SECOND, MILLISECOND, MICROSECOND, NANOSECOND */
    if (strncmp(f, "tt", 2) == 0 && f[2] != '\0' && strchr(units, f[2]) && f[3] == '\0') {
        l->type = T_TIME;
        l->unit = (int)(strchr(units, f[2]) - units);
        l->bit_width = l->unit <= 1 ? 32 : 64;
        return true;
    }
    if (strncmp(f, "ts", 2) == 0 && f[2] != '\0' && strchr(units, f[2]) && f[3] == ':') {
        l->type = T_TIMESTAMP;
        l->unit = (int)(strchr(units, f[2]) - units);
        l->bit_width = 64;
        l->timezone = f + 4;
        return true;
    }
    if (strcmp(f, "tiM") == 0 || strcmp(f, "tiD") == 0 || strcmp(f, "tin") == 0) {
        l->type = T_INTERVAL;
        l->unit = f[2] == 'M' ? 0 : f[2] == 'D' ? 1 : 2;
        l->bit_width = f[2] == 'M' ? 32 : f[2] == 'D' ? 64 : 128;
        return true;
    }
    return false;
}

int arrow_ipc_check(const struct ArrowSchema *schema, agnes_error *err)
{
    for (int64_t i = 0; i < schema->n_children; i++) {
        const struct ArrowSchema *child = schema->children[i];
        arrow_layout layout;
        if (child->dictionary != NULL || !parse_layout(child->format, &layout))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "Column \"%s\" has a type the Arrow stream cannot carry (Arrow format \"%s\"%s). "
                                   "CAST it to VARCHAR in the query, or ask for format=parquet.",
                                   child->name ? child->name : "?", child->format,
                                   child->dictionary ? ", dictionary-encoded" : "");
        if (arrow_ipc_check(child, err) != AGNES_OK)
            return err->code;
    }
    return AGNES_OK;
}

/* The type table of a Field; its union tag goes to *type_id. */
static uint32_t type_table(fb *b, const arrow_layout *l, uint8_t *type_id)
{
    uint32_t timezone = 0;
    if (l->type == T_TIMESTAMP && l->timezone[0] != '\0')
        timezone = fb_string(b, l->timezone);
    fb_start_table(b);
    switch (l->type) {
    case T_INT:
        fb_add_i32(b, 0, l->bit_width);
        fb_add_u8(b, 1, l->is_signed);
        break;
    case T_FLOAT: fb_add_i16(b, 0, (int16_t)l->unit); break;
    case T_DECIMAL:
        fb_add_i32(b, 0, l->precision);
        fb_add_i32(b, 1, l->scale);
        fb_add_i32(b, 2, l->bit_width);
        break;
    case T_DATE: fb_add_i16(b, 0, (int16_t)l->unit); break;
    case T_TIME:
        fb_add_i16(b, 0, (int16_t)l->unit);
        fb_add_i32(b, 1, l->bit_width);
        break;
    case T_TIMESTAMP:
        fb_add_i16(b, 0, (int16_t)l->unit);
        if (timezone)
            fb_add_ref(b, 1, timezone);
        break;
    case T_INTERVAL: fb_add_i16(b, 0, (int16_t)l->unit); break;
    case T_FIXED_BINARY: case T_FIXED_LIST: fb_add_i32(b, 0, l->fixed); break;
    default: break; /* Null, Bool, Utf8, Binary, List, Struct_, Map: no fields */
    }
    *type_id = (uint8_t)l->type;
    return fb_end_table(b);
}

static uint32_t field_table(fb *b, const struct ArrowSchema *schema)
{
    arrow_layout layout;
    parse_layout(schema->format, &layout); /* checked by arrow_ipc_check */
    uint32_t children[schema->n_children > 0 ? schema->n_children : 1];
    for (int64_t i = 0; i < schema->n_children; i++)
        children[i] = field_table(b, schema->children[i]);
    uint32_t child_vector = fb_vector_of_refs(b, children, (size_t)schema->n_children);
    uint8_t type_id;
    uint32_t type = type_table(b, &layout, &type_id);
    uint32_t name = fb_string(b, schema->name ? schema->name : "");
    fb_start_table(b);
    fb_add_ref(b, 0, name);
    fb_add_u8(b, 1, (schema->flags & ARROW_FLAG_NULLABLE) != 0);
    fb_add_u8(b, 2, type_id);
    fb_add_ref(b, 3, type);
    fb_add_ref(b, 5, child_vector);
    return fb_end_table(b);
}

enum { HEADER_SCHEMA = 1, HEADER_RECORD_BATCH = 3, METADATA_V5 = 4 };

static uint32_t message_table(fb *b, uint8_t header_type, uint32_t header, int64_t body_length)
{
    fb_start_table(b);
    fb_add_i64(b, 3, body_length);
    fb_add_ref(b, 2, header);
    fb_add_i16(b, 0, METADATA_V5);
    fb_add_u8(b, 1, header_type);
    return fb_end_table(b);
}

/* Frame a finished flatbuffer: continuation marker, padded length, bytes. */
static void write_message(strbuf *out, const fb *b)
{
    static const uint8_t zeros[8] = {0};
    uint32_t continuation = 0xFFFFFFFFu;
    uint32_t padded = (uint32_t)((b->used + 7) & ~(size_t)7);
    strbuf_append(out, (const char *)&continuation, 4);
    strbuf_append(out, (const char *)&padded, 4);
    strbuf_append(out, (const char *)b->buf + b->cap - b->used, b->used);
    strbuf_append(out, (const char *)zeros, padded - b->used);
}

int arrow_ipc_write_schema(strbuf *out, const struct ArrowSchema *schema, agnes_error *err)
{
    fb b = {0};
    uint32_t fields[schema->n_children > 0 ? schema->n_children : 1];
    for (int64_t i = 0; i < schema->n_children; i++)
        fields[i] = field_table(&b, schema->children[i]);
    uint32_t field_vector = fb_vector_of_refs(&b, fields, (size_t)schema->n_children);
    fb_start_table(&b);
    fb_add_ref(&b, 1, field_vector);
    fb_add_i16(&b, 0, 0); /* little-endian */
    uint32_t header = fb_end_table(&b);
    fb_finish(&b, message_table(&b, HEADER_SCHEMA, header, 0));
    int rc = b.failed ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
    if (rc == AGNES_OK)
        write_message(out, &b);
    free(b.buf);
    return rc;
}

/* ---- record batches ---------------------------------------------------- */

typedef struct batch_plan {
    int64_t *nodes; /* (length, null_count) pairs, pre-order */
    size_t node_count;
    int64_t *buffers; /* (offset, length) pairs */
    size_t buffer_count;
    const void **sources; /* where each buffer's bytes are */
    size_t capacity_nodes, capacity_buffers;
    int64_t body_length;
    bool failed;
} batch_plan;

static void plan_buffer(batch_plan *p, const void *source, int64_t length)
{
    if (p->buffer_count == p->capacity_buffers) {
        size_t cap = p->capacity_buffers ? p->capacity_buffers * 2 : 16;
        int64_t *buffers = realloc(p->buffers, cap * 2 * sizeof *buffers);
        const void **sources = buffers ? realloc(p->sources, cap * sizeof *sources) : NULL;
        if (buffers)
            p->buffers = buffers;
        if (sources == NULL) {
            p->failed = true;
            return;
        }
        p->sources = sources;
        p->capacity_buffers = cap;
    }
    if (source == NULL)
        length = 0;
    p->buffers[2 * p->buffer_count] = p->body_length;
    p->buffers[2 * p->buffer_count + 1] = length;
    p->sources[p->buffer_count++] = source;
    p->body_length += (length + 7) & ~(int64_t)7;
}

static void plan_node(batch_plan *p, int64_t length, int64_t null_count)
{
    if (p->node_count == p->capacity_nodes) {
        size_t cap = p->capacity_nodes ? p->capacity_nodes * 2 : 16;
        int64_t *nodes = realloc(p->nodes, cap * 2 * sizeof *nodes);
        if (nodes == NULL) {
            p->failed = true;
            return;
        }
        p->nodes = nodes;
        p->capacity_nodes = cap;
    }
    p->nodes[2 * p->node_count] = length;
    p->nodes[2 * p->node_count + 1] = null_count;
    p->node_count++;
}

/* The buffers of one array, in IPC order.  DuckDB's arrays start at offset
 * 0; a sliced array is refused rather than sent wrong. */
static void plan_array(batch_plan *p, const struct ArrowSchema *schema, const struct ArrowArray *array)
{
    arrow_layout l;
    parse_layout(schema->format, &l);
    if (array->offset != 0) {
        p->failed = true;
        return;
    }
    int64_t n = array->length;
    const uint8_t *validity = l.type == T_NULL ? NULL : array->buffers[0];
    int64_t nulls = array->null_count;
    if (nulls < 0) { /* "unknown" in the C data interface: count the bitmap */
        nulls = 0;
        for (int64_t i = 0; validity != NULL && i < n; i++)
            nulls += !(validity[i / 8] >> (i % 8) & 1);
    }
    plan_node(p, n, l.type == T_NULL ? n : nulls);
    if (l.type == T_NULL)
        return;
    plan_buffer(p, nulls > 0 ? validity : NULL, (n + 7) / 8);
    if (l.offsets) {
        const void *offsets = array->buffers[1];
        plan_buffer(p, offsets, (n + 1) * l.offsets);
        if (l.has_data) {
            int64_t end = n == 0 || offsets == NULL ? 0
                          : l.offsets == 4   ? ((const int32_t *)offsets)[n]
                                             : ((const int64_t *)offsets)[n];
            plan_buffer(p, array->buffers[2], end);
        }
    } else if (l.bit_width > 0) {
        plan_buffer(p, array->buffers[1], l.bit_width == 1 ? (n + 7) / 8 : n * (l.bit_width / 8));
    }
    for (int64_t i = 0; i < schema->n_children && i < array->n_children; i++)
        plan_array(p, schema->children[i], array->children[i]);
}

int arrow_ipc_write_batch(strbuf *out, const struct ArrowSchema *schema, const struct ArrowArray *array,
                          agnes_error *err)
{
    batch_plan p = {0};
    fb b = {0};
    int rc = AGNES_OK;
    for (int64_t i = 0; i < schema->n_children && i < array->n_children; i++)
        plan_array(&p, schema->children[i], array->children[i]);
    if (p.failed) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot lay out an Arrow record batch");
        goto done;
    }
    uint32_t buffers = fb_vector_of_pairs(&b, p.buffers, p.buffer_count);
    uint32_t nodes = fb_vector_of_pairs(&b, p.nodes, p.node_count);
    fb_start_table(&b);
    fb_add_i64(&b, 0, array->length);
    fb_add_ref(&b, 1, nodes);
    fb_add_ref(&b, 2, buffers);
    uint32_t header = fb_end_table(&b);
    fb_finish(&b, message_table(&b, HEADER_RECORD_BATCH, header, p.body_length));
    if (b.failed) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    write_message(out, &b);
    static const char zeros[8] = {0};
    for (size_t i = 0; i < p.buffer_count; i++) {
        int64_t length = p.buffers[2 * i + 1];
        if (length > 0)
            strbuf_append(out, p.sources[i], (size_t)length);
        strbuf_append(out, zeros, (size_t)(((length + 7) & ~(int64_t)7) - length));
    }
done:
    free(p.nodes);
    free(p.buffers);
    free(p.sources);
    free(b.buf);
    return rc;
}

void arrow_ipc_write_end(strbuf *out)
{
    static const uint8_t end[8] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0};
    strbuf_append(out, (const char *)end, sizeof end);
}
