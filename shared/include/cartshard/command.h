/*
 * command.h: the main() of a service with subcommands (cart-store, cart-stats): what the command
 * line asks for, the settings loaded for the command, the command run, and nats.c's threads
 * joined before the settings go.
 */
#ifndef CARTSHARD_COMMAND_H
#define CARTSHARD_COMMAND_H

#include <stddef.h>

#include "cartshard/config.h"

/* A subcommand: its name on the command line, and what runs it (its exit status). */
typedef struct cart_command {
    const char *name;
    int (*run)(const cart_config *cfg);
} cart_command;

/* What a service is, for cart_command_main. */
typedef struct cart_service {
    const char *name;    /* "cart-store": log records, messages, `version` */
    const char *version; /* printed by `version` */
    cart_config_role role;
    const char *usage;            /* the text `help` prints, ending in a newline */
    const cart_command *commands; /* the first one runs when none is named */
    size_t ncommands;
} cart_service;

/*
 * Runs the command argv[1] names (the first of svc->commands without one): `help` (also --help
 * and -h) prints the usage and returns 0; `version` (also --version) prints "<name> <version>";
 * an unknown command prints the usage to stderr and returns 2. Otherwise the settings are loaded
 * for svc->role (a bad one is logged and printed, naming the variable, and returns 2), logging
 * takes their level, SIGPIPE is ignored, and the command runs; its status is returned after
 * nats.c's threads were joined (they may still log with the settings' strings) and the settings
 * released.
 */
int cart_command_main(const cart_service *svc, int argc, char **argv);

#endif
