/*
 * `agnes query-worker` - internal: the process one /api/query engine runs
 * in.  `agnes serve` starts it as `agnes query-worker SERVER_PID` with the
 * channel on file descriptor 3 (see engine/query_protocol.h); run by hand
 * it says so and exits 2.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "engine/query_protocol.h"
#include "engine/query_worker.h"

int command_query_worker(int argc, char **argv)
{
    long server = argc >= 2 ? strtol(argv[1], NULL, 10) : 0;
    if (server <= 0) {
        fprintf(stderr, "agnes query-worker: run by `agnes serve` only (it passes its process id)\n");
        return 2;
    }
    return query_worker_main(QUERY_WORKER_FD, (pid_t)server);
}
