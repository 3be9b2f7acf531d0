/*
 * commands.h - one entry point per `agnes` subcommand.  main.c only
 * dispatches; each command lives in its own file and returns the process
 * exit code (0 ok, 1 failed, 2 usage error).
 */
#ifndef AGNES_CLI_COMMANDS_H
#define AGNES_CLI_COMMANDS_H

#define EXIT_USAGE 2

int command_serve(int argc, char **argv);
int command_migrate(int argc, char **argv);
int command_doctor(int argc, char **argv);
int command_routes(int argc, char **argv);
int command_contract(int argc, char **argv);
int command_rebuild(int argc, char **argv);
int command_sync(int argc, char **argv);
int command_sql(int argc, char **argv);
int command_query_worker(int argc, char **argv); /* internal: started by serve */
int command_openapi(int argc, char **argv);
int command_schema(int argc, char **argv);
int command_backup(int argc, char **argv);
int command_restore(int argc, char **argv);
int command_version(int argc, char **argv);
int command_help(int argc, char **argv);
int command_mcp(int argc, char **argv);

#endif
