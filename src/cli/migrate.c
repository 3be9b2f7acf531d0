/*
 * `agnes migrate [--to N]` - bring system.duckdb up to date without serving.
 * Operators run it before an upgrade to see the migration happen on its own;
 * --to N stops at an intermediate version (staged upgrades, tests).
 */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"
#include "core/runtime.h"
#include "store/migrations.h"

int command_migrate(int argc, char **argv)
{
    long long target = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc && util_parse_long(argv[i + 1], &target) && target > 0) {
            i++;
            continue;
        }
        fprintf(stderr, "usage: agnes migrate [--to VERSION]   (VERSION from 1 to %d)\n", migrations_latest());
        return EXIT_USAGE;
    }
    agnes_runtime rt = {0};
    agnes_error err;
    agnes_error_clear(&err);
    migration_report report;
    int exit_code = 1;
    if (runtime_load(&rt, &err) || runtime_prepare_state(&rt, &err) ||
        migrations_run(&rt.paths, (int)target, &report, &err)) {
        fprintf(stderr, "agnes migrate: %s\n", err.message);
        goto done;
    }
    if (report.from_version == report.to_version)
        printf("system.duckdb is at schema version %d; nothing to do\n", report.to_version);
    else
        printf("system.duckdb migrated from version %d to %d%s\n", report.from_version, report.to_version,
               report.backed_up ? " (previous file kept as system.duckdb.pre-migrate)" : "");
    exit_code = 0;
done:
    runtime_free(&rt);
    return exit_code;
}
