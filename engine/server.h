/*
 * The process: the configuration, the storage, the shards and the cross-shard
 * rings between them. Created by main, immutable while the shards run except
 * for the stop flag.
 */
#ifndef RP_ENGINE_SERVER_H
#define RP_ENGINE_SERVER_H

#include "base/spsc.h"
#include "engine/chat/chat.h"
#include "engine/config.h"
#include "engine/shard.h"
#include "storage/storage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct server {
    struct config cfg;
    struct chat_config chat_cfg;
    struct storage *storage;
    unsigned nshards;
    struct shard *shards;
    struct spsc *rings; /* rings[from * nshards + to] */
    atomic_int stop;
    /* stopping: shards counted quiet, and a count of changes to that (shard.c) */
    atomic_uint nquiet, quiet_epoch;
    atomic_uint ready; /* shards whose ring is set up */
    atomic_uint failed;
    unsigned ncpus;
};

/* Opens the storage and creates every shard and ring. 0 or -errno (logged). */
int server_init(struct server *srv, const struct config *cfg);

/* Starts the shard threads and waits until each has its ring. 0 or -errno. */
int server_start(struct server *srv);

/* Asks every shard to stop gracefully, joins them, closes the storage. */
void server_stop(struct server *srv);
void server_deinit(struct server *srv);

#endif
