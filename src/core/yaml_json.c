#include "core/yaml_json.h"

#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 32

static json_t *node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth)
{
    if (node == NULL || depth > MAX_DEPTH)
        return NULL;
    if (node->type == YAML_SCALAR_NODE)
        return json_stringn((const char *)node->data.scalar.value, node->data.scalar.length);
    if (node->type == YAML_SEQUENCE_NODE) {
        json_t *array = json_array();
        for (yaml_node_item_t *item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++) {
            json_t *child = node_to_json(doc, yaml_document_get_node(doc, *item), depth + 1);
            if (child == NULL) {
                json_decref(array);
                return NULL;
            }
            json_array_append_new(array, child);
        }
        return array;
    }
    json_t *object = json_object();
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(doc, pair->key);
        json_t *value = node_to_json(doc, yaml_document_get_node(doc, pair->value), depth + 1);
        if (key == NULL || key->type != YAML_SCALAR_NODE || value == NULL) {
            json_decref(value);
            json_decref(object);
            return NULL;
        }
        json_object_set_new(object, (const char *)key->data.scalar.value, value);
    }
    return object;
}

int yaml_json_parse(const char *text, size_t len, const char *label, json_t **out, agnes_error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    *out = NULL;
    if (!yaml_parser_initialize(&parser))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = agnes_error_set(err, AGNES_ERR_CONFIG, "%s line %lu: %s", label,
                                 (unsigned long)parser.problem_mark.line + 1,
                                 parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = AGNES_OK;
    if (root == NULL)
        *out = json_object();
    else if (root->type != YAML_MAPPING_NODE || (*out = node_to_json(&doc, root, 0)) == NULL)
        rc = agnes_error_set(err, AGNES_ERR_CONFIG, "%s: the document must be a mapping of settings", label);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int write_to_strbuf(void *data, unsigned char *buffer, size_t size)
{
    strbuf_append(data, (const char *)buffer, size);
    return !strbuf_failed(data);
}

static int emit(yaml_emitter_t *emitter, yaml_event_t *event)
{
    return yaml_emitter_emit(emitter, event) ? 0 : -1;
}

static int emit_scalar(yaml_emitter_t *emitter, const char *text)
{
    yaml_event_t event;
    yaml_scalar_event_initialize(&event, NULL, (yaml_char_t *)YAML_STR_TAG, (yaml_char_t *)text, (int)strlen(text), 1,
                                 1, YAML_ANY_SCALAR_STYLE);
    return emit(emitter, &event);
}

static int emit_value(yaml_emitter_t *emitter, const json_t *value)
{
    yaml_event_t event;
    char number[64];
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        const char *key;
        const json_t *child;
        yaml_mapping_start_event_initialize(&event, NULL, (yaml_char_t *)YAML_MAP_TAG, 1, YAML_BLOCK_MAPPING_STYLE);
        if (emit(emitter, &event))
            return -1;
        json_object_foreach((json_t *)value, key, child) {
            if (emit_scalar(emitter, key) || emit_value(emitter, child))
                return -1;
        }
        yaml_mapping_end_event_initialize(&event);
        return emit(emitter, &event);
    }
    case JSON_ARRAY: {
        size_t i;
        const json_t *child;
        yaml_sequence_start_event_initialize(&event, NULL, (yaml_char_t *)YAML_SEQ_TAG, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (emit(emitter, &event))
            return -1;
        json_array_foreach(value, i, child) {
            if (emit_value(emitter, child))
                return -1;
        }
        yaml_sequence_end_event_initialize(&event);
        return emit(emitter, &event);
    }
    case JSON_STRING:
        return emit_scalar(emitter, json_string_value(value));
    case JSON_INTEGER:
        snprintf(number, sizeof number, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return emit_scalar(emitter, number);
    case JSON_REAL:
        snprintf(number, sizeof number, "%.17g", json_real_value(value));
        return emit_scalar(emitter, number);
    case JSON_TRUE:
        return emit_scalar(emitter, "true");
    case JSON_FALSE:
        return emit_scalar(emitter, "false");
    default:
        return emit_scalar(emitter, "");
    }
}

int yaml_json_emit(const json_t *value, strbuf *out, agnes_error *err)
{
    yaml_emitter_t emitter;
    yaml_event_t event;
    if (!yaml_emitter_initialize(&emitter))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    yaml_emitter_set_output(&emitter, write_to_strbuf, out);
    yaml_emitter_set_unicode(&emitter, 1);
    yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING);
    int failed = emit(&emitter, &event);
    if (!failed) {
        yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1);
        failed = emit(&emitter, &event) || emit_value(&emitter, value);
    }
    if (!failed) {
        yaml_document_end_event_initialize(&event, 1);
        failed = emit(&emitter, &event);
    }
    if (!failed) {
        yaml_stream_end_event_initialize(&event);
        failed = emit(&emitter, &event);
    }
    int rc = failed ? agnes_error_set(err, AGNES_ERR_IO, "cannot write YAML: %s",
                                      emitter.problem ? emitter.problem : "out of memory")
                    : AGNES_OK;
    yaml_emitter_delete(&emitter);
    return rc;
}
