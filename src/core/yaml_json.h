/*
 * yaml_json.h - YAML documents as jansson trees, both ways (libyaml).
 *
 * For the files Agnes writes itself (${STATE_DIR}/instance.yaml): read the
 * current overlay, change a branch, write it back.  Scalars are strings on
 * the way in (the configuration parses values by key, see config.c);
 * comments do not survive, which is fine for a machine-written file.
 */
#ifndef AGNES_CORE_YAML_JSON_H
#define AGNES_CORE_YAML_JSON_H

#include <jansson.h>

#include "core/error.h"
#include "core/strbuf.h"

/* An empty or absent document is an empty object; anything but a mapping
 * at the top is AGNES_ERR_CONFIG naming label. */
int yaml_json_parse(const char *text, size_t len, const char *label, json_t **out, agnes_error *err);

/* Append value (an object) as a YAML document. */
int yaml_json_emit(const json_t *value, strbuf *out, agnes_error *err);

#endif
