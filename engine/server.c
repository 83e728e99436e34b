/*
 * Process-wide set-up and tear-down: storage, shards, the N x N cross-shard
 * rings, the shard threads. Nothing here runs on the hot path.
 */
#define _GNU_SOURCE
#include "engine/server.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static void notify_shard(void *arg, unsigned shard)
{
    struct server *srv = arg;
    shard_notify(&srv->shards[shard]);
}

static void chat_config_from(struct chat_config *cc, const struct config *cfg)
{
    cc->heartbeat_ms = cfg->heartbeat * 1000u;
    cc->max_frame = cfg->max_frame;
    cc->max_body = cfg->max_body;
    cc->catchup_limit = cfg->catchup_limit;
    cc->write_pipeline = cfg->write_pipeline;
    cc->dedup_window_ms = (uint64_t)cfg->dedup_window * 1000u;
    cc->dedup_memory = cfg->dedup_memory;
    cc->cursor_delay_ms = cfg->cursor_delay_ms;
    cc->recall_window_ms = (uint64_t)cfg->recall_window * 1000u;
    cc->max_devices = cfg->max_devices;
    cc->max_group_size = cfg->max_group_size;
    cc->outbound_limit = cfg->outbound_limit;
    cc->dm_friends_only = !strcmp(cfg->dm_policy, "friends");
}

int server_init(struct server *srv, const struct config *cfg)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = *cfg;
    chat_config_from(&srv->chat_cfg, &srv->cfg);
    if (getrandom(&srv->chat_cfg.run_id, sizeof(srv->chat_cfg.run_id), 0) !=
        (ssize_t)sizeof(srv->chat_cfg.run_id))
        srv->chat_cfg.run_id = clock_wall_ms() << 16 ^ (uint64_t)getpid();
    srv->chat_cfg.run_id |= 1; /* never 0: records without one are a past run's */
    if (getrandom(srv->chat_cfg.gid_key, sizeof(srv->chat_cfg.gid_key), 0) !=
        (ssize_t)sizeof(srv->chat_cfg.gid_key)) {
        log_error("random_failed", "err=\"%s\"", strerror(errno));
        return -EIO;
    }
    srv->ncpus = (unsigned)get_nprocs();
    srv->nshards = cfg->shards ? cfg->shards : srv->ncpus;
    if (srv->nshards > 255) {
        log_error("config_invalid", "reason=\"at most 255 shards\"");
        return -EINVAL;
    }
    unsigned n = srv->nshards;

    struct storage_config sc = {
        .path = srv->cfg.data,
        .block_cache_bytes = (size_t)cfg->block_cache_mb << 20,
        .nshards = n,
        .dedup_window_ms = (uint64_t)cfg->dedup_window * 1000u,
        .queue_depth = 4096,
        .notify = notify_shard,
        .notify_arg = srv,
    };
    int r = stg_durability_parse(cfg->durability, &sc.durability);
    if (r)
        return r;
    r = storage_open(&sc, &srv->storage);
    if (r) {
        log_error("storage_open_failed", "path=%s err=\"%s\"", cfg->data, err_str(r));
        return r;
    }
    srv->rings = calloc((size_t)n * n, sizeof(*srv->rings));
    srv->shards = calloc(n, sizeof(*srv->shards));
    if (!srv->rings || !srv->shards)
        return -ENOMEM;
    for (unsigned i = 0; i < n * n; i++) {
        r = spsc_init(&srv->rings[i], cfg->xcore_depth, sizeof(struct xmsg));
        if (r)
            return r;
    }
    for (unsigned i = 0; i < n; i++) {
        r = shard_init(&srv->shards[i], srv, i);
        if (r) {
            log_error("shard_init_failed", "shard=%u err=\"%s\"", i, err_str(r));
            return r;
        }
    }
    return 0;
}

int server_start(struct server *srv)
{
    for (unsigned i = 0; i < srv->nshards; i++) {
        int r = pthread_create(&srv->shards[i].thread, NULL, shard_main, &srv->shards[i]);
        if (r)
            return -r;
        /* Wait for each ring before starting the next: a shard may hand a
         * socket to any other as soon as it runs, so every ring fd must exist. */
    }
    while (atomic_load(&srv->ready) < srv->nshards)
        usleep(1000);
    if (atomic_load(&srv->failed))
        return -EIO;
    log_info("listening", "bind=%s port=%u shards=%u durability=%s", srv->cfg.bind, srv->cfg.port,
             srv->nshards, srv->cfg.durability);
    return 0;
}

void server_stop(struct server *srv)
{
    atomic_store(&srv->stop, 1);
    for (unsigned i = 0; i < srv->nshards; i++)
        shard_stop(&srv->shards[i]);
    for (unsigned i = 0; i < srv->nshards; i++)
        pthread_join(srv->shards[i].thread, NULL);
}

void server_deinit(struct server *srv)
{
    if (srv->shards) {
        for (unsigned i = 0; i < srv->nshards; i++)
            shard_deinit(&srv->shards[i]);
    }
    storage_close(srv->storage);
    if (srv->rings) {
        for (unsigned i = 0; i < srv->nshards * srv->nshards; i++)
            spsc_deinit(&srv->rings[i]);
    }
    free(srv->rings);
    free(srv->shards);
    srv->rings = NULL;
    srv->shards = NULL;
}
