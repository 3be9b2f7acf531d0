/*
 * `agnes contract check PATH [--json]` - validate an extract.duckdb against
 * the contract (contracts/, SPEC §7) and print every violation with its fix.
 * Exit 0 when it conforms, 1 when it does not, 2 on usage errors.  Needs no
 * server, configuration or state: connector authors run it standalone.
 * The check runs in a child process (see engine/contract.h): a file that
 * crashes DuckDB is reported as a violation, not a crash of this command.
 * --in-process is that child.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
    json_t *doc = contract_report_json(path, report);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

/* The child side of contract_check() (engine/contract_child.c): a damaged
 * file may make DuckDB allocate without end, so the child's address space is
 * capped (not under AddressSanitizer, which reserves terabytes of shadow). */
static void limit_checker(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit memory = {2ULL << 30, 2ULL << 30};
    setrlimit(RLIMIT_AS, &memory);
#endif
    struct rlimit cpu = {CONTRACT_CHECK_TIMEOUT_SECONDS + 5, CONTRACT_CHECK_TIMEOUT_SECONDS + 10};
    setrlimit(RLIMIT_CPU, &cpu);
}

int command_contract(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false, in_process = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (strcmp(argv[i], "--in-process") == 0)
            in_process = true;
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
    if (in_process)
        limit_checker();
    int rc = in_process ? contract_check_in_process(path, &allow, &report, &err)
                        : contract_check(path, &allow, &report, &err);
    if (rc != AGNES_OK) {
        fprintf(stderr, "agnes contract check: %s\n", err.message);
        contract_report_free(&report);
        return 1;
    }
    if (as_json)
        print_json(path, &report);
    else
        print_human(path, &report);
    rc = report.count == 0 ? 0 : 1;
    contract_report_free(&report);
    return rc;
}
