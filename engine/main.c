/*
 * ringpushd: parse the configuration, open the storage, start one shard per
 * core and wait for SIGINT/SIGTERM, then stop gracefully (bye shutdown to
 * every client, flush, exit 0).
 */
#include "base/err.h"
#include "base/log.h"
#include "engine/config.h"
#include "engine/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum log_level level_of(const char *s)
{
    if (!strcmp(s, "debug"))
        return LOG_DEBUG;
    if (!strcmp(s, "warn"))
        return LOG_WARN;
    if (!strcmp(s, "error"))
        return LOG_ERROR;
    return LOG_INFO;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    static struct server srv;
    config_defaults(&cfg);
    int r = config_load(&cfg, argc, argv);
    if (r)
        return r > 0 ? 0 : 2;
    log_set_level(level_of(cfg.log_level));

    /* Signals are taken synchronously by this thread; shard threads inherit
     * the mask and never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    r = server_init(&srv, &cfg);
    if (!r)
        r = server_start(&srv);
    if (r) {
        log_error("start_failed", "err=\"%s\"", err_str(r));
        server_stop(&srv);
        server_deinit(&srv);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal", "sig=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(&srv);
    server_deinit(&srv);
    log_info("exit", "status=0");
    return 0;
}
