/*
 * `agnes query-worker` - internal: the process one /api/query engine runs
 * in.  `agnes serve` starts it with the channel on file descriptor 3 (see
 * engine/query_protocol.h); run by hand it says so and exits 2.
 */
#include "cli/commands.h"
#include "engine/query_protocol.h"
#include "engine/query_worker.h"

int command_query_worker(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return query_worker_main(QUERY_WORKER_FD);
}
