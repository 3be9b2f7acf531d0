/*
 * `agnes contract check PATH [--json]` - validate an extract.duckdb against
 * the contract (contracts/, SPEC §7) and print every violation with its fix.
 * Exit 0 when it conforms, 1 when it does not, 2 on usage errors.  Needs no
 * server, configuration or state: connector authors run it standalone.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "engine/contract.h"

static void print_human(const char *path, const contract_report *report)
{
    if (report->count == 0) {
        printf("ok: %s satisfies the extract contract (%d table%s, %d local)\n", path, report->tables,
               report->tables == 1 ? "" : "s", report->local_tables);
        return;
    }
    printf("%s: %zu contract violation%s\n", path, report->count, report->count == 1 ? "" : "s");
    for (size_t i = 0; i < report->count; i++)
        printf("  [%s] %s\n      fix: %s\n", report->items[i].rule, report->items[i].message, report->items[i].fix);
}

static void print_json(const char *path, const contract_report *report)
{
    json_t *violations = json_array();
    for (size_t i = 0; i < report->count; i++)
        json_array_append_new(violations, json_pack("{s:s, s:s, s:s}", "rule", report->items[i].rule, "message",
                                                    report->items[i].message, "fix", report->items[i].fix));
    json_t *doc = json_pack("{s:s, s:b, s:i, s:i, s:o}", "path", path, "ok", report->count == 0, "tables",
                            report->tables, "local_tables", report->local_tables, "violations", violations);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

int command_contract(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (path == NULL)
            path = argv[i];
        else
            path = "";
    }
    if (argc < 3 || strcmp(argv[1], "check") != 0 || path == NULL || path[0] == '\0') {
        fprintf(stderr, "usage: agnes contract check PATH/extract.duckdb [--json]\n");
        return EXIT_USAGE;
    }
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    contract_report report;
    agnes_error err;
    if (contract_check(path, &allow, &report, &err) != AGNES_OK) {
        fprintf(stderr, "agnes contract check: %s\n", err.message);
        contract_report_free(&report);
        return 1;
    }
    if (as_json)
        print_json(path, &report);
    else
        print_human(path, &report);
    int rc = report.count == 0 ? 0 : 1;
    contract_report_free(&report);
    return rc;
}
