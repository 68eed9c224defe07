/*
 * command.c: the main() of a service with subcommands (command.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "cartshard/command.h"

#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cartshard/log.h"

static bool is(const char *arg, const char *a, const char *b, const char *c)
{
    return strcmp(arg, a) == 0 || (b && strcmp(arg, b) == 0) || (c && strcmp(arg, c) == 0);
}

int cart_command_main(const cart_service *svc, int argc, char **argv)
{
    const cart_command *cmd = &svc->commands[0];
    cart_config cfg;
    char err[512];
    int rc;

    if (argc > 1) {
        if (is(argv[1], "help", "--help", "-h")) {
            fputs(svc->usage, stdout);
            return 0;
        }
        if (is(argv[1], "version", "--version", NULL)) {
            printf("%s %s\n", svc->name, svc->version);
            return 0;
        }
        cmd = NULL;
        for (size_t i = 0; i < svc->ncommands && cmd == NULL; i++)
            if (strcmp(argv[1], svc->commands[i].name) == 0)
                cmd = &svc->commands[i];
        if (cmd == NULL) {
            fprintf(stderr, "%s: unknown command \"%s\"\n", svc->name, argv[1]);
            fputs(svc->usage, stderr);
            return 2;
        }
    }
    cart_log_init(svc->name, CART_LOG_INFO);
    if (cart_config_load(&cfg, svc->role, cart_env_getenv, NULL, err, sizeof err) != CART_OK) {
        cart_log(CART_LOG_ERROR, "invalid configuration", CART_LS("error", err), NULL);
        fprintf(stderr, "%s: %s\n", svc->name, err);
        return 2;
    }
    cart_log_init(svc->name, cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    rc = cmd->run(&cfg);
    /* nats.c's threads may still report a connection's close (logging its name, which lives in
     * cfg): they are joined before cfg goes. */
    nats_CloseAndWait(2000);
    cart_config_cleanup(&cfg);
    return rc;
}
