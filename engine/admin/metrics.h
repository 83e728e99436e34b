/*
 * GET /metrics: a snapshot of the process in the Prometheus text format,
 * gathered from every shard's struct shard_stats, the cross-shard rings and
 * the storage counters.
 *
 * The counters of other shards are read without locks (relaxed loads of
 * values their own threads keep writing): a scrape may see one shard a loop
 * iteration older than another, which is the staleness Prometheus expects.
 *
 * Thread: shard 0 (any thread would do: nothing is written).
 */
#ifndef RP_ENGINE_ADMIN_METRICS_H
#define RP_ENGINE_ADMIN_METRICS_H

#include "base/buf.h"

#include <stdint.h>

struct server;

/* What the admin server counts about itself. */
struct admin_counters {
    uint64_t requests;     /* requests answered */
    uint64_t unauthorized; /* answered 401 */
    uint64_t errors;       /* answered 4xx/5xx other than 401 */
    uint64_t timeouts;     /* connections closed for being slow or idle */
    uint64_t idle_closed;  /* idle connections closed to make room for a new one */
    uint64_t backups_ok;
    uint64_t backups_failed;
    uint32_t conns; /* admin connections open */
};

/* Appends the whole exposition to out. 0 or -ENOMEM. */
int metrics_render(const struct server *srv, const struct admin_counters *ac, struct buf *out);

#endif
