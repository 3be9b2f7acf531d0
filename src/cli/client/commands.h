/* commands.h - the analyst commands (`agnes login`, `pull`, ...), one file each under src/cli/client/. */
#ifndef AGNES_CLI_CLIENT_COMMANDS_H
#define AGNES_CLI_CLIENT_COMMANDS_H

#include <stdbool.h>

int command_login(int argc, char **argv);
int command_logout(int argc, char **argv);
int command_status(int argc, char **argv);
int command_pull(int argc, char **argv);
int command_catalog(int argc, char **argv);
int command_query(int argc, char **argv);
int command_push(int argc, char **argv);
int command_init(int argc, char **argv);
int command_admin(int argc, char **argv);
/* The client half of `agnes doctor` (cli/doctor.c picks which half runs). */
int client_doctor(bool as_json, const char *mode_reason);

#endif
