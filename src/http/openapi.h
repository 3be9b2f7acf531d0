/*
 * openapi.h - the API description, generated from the route table
 * (routes.c) and the field lists of openapi.c, never written by hand.
 * `agnes openapi` prints it; openapi.json in the repository is its output,
 * a test fails when the two drift, and scripts/breaking-check compares
 * it across revisions (removed paths, removed or retyped fields, new
 * required request fields).
 */
#ifndef AGNES_HTTP_OPENAPI_H
#define AGNES_HTTP_OPENAPI_H

#include <jansson.h>

/* OpenAPI 3.0 (new reference). */
json_t *openapi_document(void);

#endif
