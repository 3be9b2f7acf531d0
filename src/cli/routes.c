/*
 * `agnes routes [--json]` - the server's route table: method, path, who may
 * call it.  The authorization test suite and API documentation are built
 * from this output, so the table in src/http/routes.c stays the one truth.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "http/router.h"

int command_routes(int argc, char **argv)
{
    bool as_json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !as_json)) {
        fprintf(stderr, "usage: agnes routes [--json]\n");
        return EXIT_USAGE;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < http_route_count; i++) {
        const route *r = &http_routes[i];
        if (as_json)
            json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "method", r->method, "path",
                                                  r->pattern, "access", route_access_name(r->access), "interactive",
                                                  (r->flags & ROUTE_INTERACTIVE) != 0, "html",
                                                  (r->flags & ROUTE_HTML) != 0, "summary", r->summary));
        else
            printf("%-7s %-48s %-10s %s\n", r->method, r->pattern, route_access_name(r->access), r->summary);
    }
    if (as_json) {
        char *text = json_dumps(list, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    }
    json_decref(list);
    return 0;
}
