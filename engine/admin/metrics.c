/*
 * The metric families of /metrics (see metrics.h). Names follow Prometheus
 * conventions: ringpush_ prefix, _total for counters, base units (seconds,
 * bytes). Each family is written whole before the next, one sample per shard
 * (label shard="i") where the value is per shard.
 */
#include "engine/admin/metrics.h"

#include "base/spsc.h"
#include "engine/admin/prom.h"
#include "engine/server.h"
#include "engine/shard.h"
#include "storage/storage.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

/* A field of another shard's stats, read while its thread may be writing it. */
static uint64_t peek(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

struct per_shard {
    const char *name;
    const char *type;
    const char *help;
    const char *extra; /* an extra label, e.g. outcome="ok", or NULL */
    size_t off;        /* offset of the field in struct shard_stats */
};

#define STAT(f) offsetof(struct shard_stats, f)

/* Families with one sample per shard, or several when consecutive rows share
 * a name (each with its extra label). */
static const struct per_shard shard_rows[] = {
    {"ringpush_connections", "gauge", "Client connections open (edge and home).", NULL,
     STAT(conns)},
    {"ringpush_accepts_total", "counter", "Client connections accepted and opened.", NULL,
     STAT(accepts)},
    {"ringpush_accept_pauses_total", "counter",
     "Times accepting paused until the next tick: no descriptor (fixed file table or "
     "process limit) or no memory for a new connection.",
     NULL, STAT(accept_pauses)},
    {"ringpush_hellos_total", "counter",
     "Hello requests by outcome (ok: the token verified and the session started; the session may "
     "still be refused, conflict or unavailable).",
     "outcome=\"ok\"", STAT(hello_ok)},
    {"ringpush_hellos_total", NULL, NULL, "outcome=\"unauthorized\"", STAT(hello_unauthorized)},
    {"ringpush_hellos_total", NULL, NULL, "outcome=\"bad_request\"", STAT(hello_bad)},
    {"ringpush_handoffs_total", "counter", "Authenticated connections moved between shards.",
     "dir=\"out\"", STAT(handoffs_out)},
    {"ringpush_handoffs_total", NULL, NULL, "dir=\"in\"", STAT(handoffs_in)},
    {"ringpush_frames_total", "counter", "Frames received and sent.", "dir=\"in\"",
     STAT(frames_in)},
    {"ringpush_frames_total", NULL, NULL, "dir=\"out\"", STAT(frames_out)},
    {"ringpush_bytes_total", "counter", "Bytes received and sent on client connections.",
     "dir=\"in\"", STAT(bytes_in)},
    {"ringpush_bytes_total", NULL, NULL, "dir=\"out\"", STAT(bytes_out)},
    {"ringpush_bye_slow_total", "counter",
     "Connections closed with bye slow: their outbound queue, or the pushes held for them while "
     "they log in, overflowed.",
     NULL, STAT(bye_slow)},
    {"ringpush_rate_limited_total", "counter", "Requests refused by the per-connection rate limit.",
     NULL, STAT(rate_limited)},
    {"ringpush_xcore_full_total", "counter",
     "Cross-shard messages refused because the ring was full.", NULL, STAT(xcore_full)},
    {"ringpush_closes_total", "counter", "Client connections closed.", NULL, STAT(closes)},
};

/* rows over per-shard structs: shard i's at base + i * stride */
static void render_rows(struct buf *out, const struct per_shard *rows, size_t nrows,
                        unsigned nshards, const char *base, size_t stride)
{
    char labels[96];
    for (size_t r = 0; r < nrows; r++) {
        const struct per_shard *row = &rows[r];
        if (row->type)
            prom_family(out, row->name, row->type, row->help);
        for (unsigned i = 0; i < nshards; i++) {
            const uint64_t *field = (const uint64_t *)(base + i * stride + row->off);
            snprintf(labels, sizeof(labels), "shard=\"%u\"%s%s", i, row->extra ? "," : "",
                     row->extra ? row->extra : "");
            prom_sample(out, row->name, labels, peek(field));
        }
    }
}

static int render_shards(const struct server *srv, struct buf *out)
{
    render_rows(out, shard_rows, sizeof(shard_rows) / sizeof(shard_rows[0]), srv->nshards,
                (const char *)&srv->shards[0].stats, sizeof(srv->shards[0]));
    return buf_failed(out) ? -ENOMEM : 0;
}

#define CHAT_STAT(f) offsetof(struct chat_stats, f)

/* The chat layer's per-shard counters and gauges (its histograms follow). */
static const struct per_shard chat_rows[] = {
    {"ringpush_entries_total", "counter", "Log entries made durable, by owner shard.", NULL,
     CHAT_STAT(entries)},
    {"ringpush_deliveries_total", "counter",
     "Entries pushed to devices (live and catch-up), by home shard.", NULL, CHAT_STAT(deliveries)},
    {"ringpush_login_reads_waiting", "gauge",
     "Storage reads of logins (user state, catch-up) waiting for one of the shard's read "
     "slots.",
     NULL, CHAT_STAT(reads_waiting)},
    {"ringpush_login_reads_waited_total", "counter",
     "Storage reads of logins that had to wait for a read slot.", NULL, CHAT_STAT(reads_waited)},
    {"ringpush_login_reads_cancelled_total", "counter",
     "Waiting storage reads of logins dropped because the session closed first.", NULL,
     CHAT_STAT(reads_cancelled)},
    {"ringpush_user_loads_abandoned_total", "counter",
     "Loads of a user's state stopped because every session of the user closed before it "
     "ended.",
     NULL, CHAT_STAT(user_loads_abandoned)},
    {"ringpush_queries_paused_total", "counter",
     "Times a session's connection was paused (its requests held, in order) because it had "
     "the most queries (history, group.list) in flight that one session may have.",
     NULL, CHAT_STAT(queries_paused)},
    {"ringpush_dedup_records", "gauge",
     "Dedup records (conversation, sender, cmid) an owner keeps in memory: every send of the "
     "last minute, then at most the shard's bound.",
     NULL, CHAT_STAT(dedup_records)},
    {"ringpush_cursors_waiting", "gauge",
     "Moved ack and read cursors not yet durable: waiting out cursor_delay_ms, or in a write "
     "not yet done.",
     NULL, CHAT_STAT(cursors_waiting)},
    {"ringpush_catchup_held_bytes", "gauge",
     "Bytes of catch-up reads held in memory for logins: the conversation being pushed and "
     "those read ahead of it.",
     NULL, CHAT_STAT(catchup_held_bytes)},
};

static int render_chat(const struct server *srv, struct buf *out)
{
    char labels[32];
    static const uint32_t lat_ms[CHAT_LAT_N] = CHAT_LAT_BOUNDS_MS;
    static const uint32_t cu[CHAT_CU_N] = CHAT_CU_BOUNDS;
    double lat_bounds[CHAT_LAT_N], cu_bounds[CHAT_CU_N];
    for (unsigned i = 0; i < CHAT_LAT_N; i++)
        lat_bounds[i] = lat_ms[i] / 1000.0;
    for (unsigned i = 0; i < CHAT_CU_N; i++)
        cu_bounds[i] = cu[i];
    struct chat_stats s[256];
    for (unsigned i = 0; i < srv->nshards; i++) {
        /* a racy snapshot, field by field, is what a counter read may see */
        const struct chat_stats *cs = chat_stats_get(srv->shards[i].chat);
        const uint64_t *src = (const uint64_t *)cs;
        uint64_t *dst = (uint64_t *)&s[i];
        for (size_t k = 0; k < sizeof(*cs) / sizeof(uint64_t); k++)
            dst[k] = peek(&src[k]);
    }
    render_rows(out, chat_rows, sizeof(chat_rows) / sizeof(chat_rows[0]), srv->nshards,
                (const char *)s, sizeof(s[0]));
    prom_family(out, "ringpush_push_latency_seconds", "histogram",
                "From an entry's timestamp to its arrival at a home shard with online members "
                "(sequencing, durable write, cross-shard hop); millisecond resolution.");
    for (unsigned i = 0; i < srv->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%u\"", i);
        prom_histogram(out, "ringpush_push_latency_seconds", labels, lat_bounds,
                       s[i].push_latency_hist, CHAT_LAT_N, s[i].push_latency_sum_ms / 1000.0);
    }
    prom_family(out, "ringpush_catchup_entries", "histogram",
                "Entries pushed by one login catch-up.");
    for (unsigned i = 0; i < srv->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%u\"", i);
        prom_histogram(out, "ringpush_catchup_entries", labels, cu_bounds, s[i].catchup_hist,
                       CHAT_CU_N, (double)s[i].catchup_entries);
    }
    return buf_failed(out) ? -ENOMEM : 0;
}

static int render_rings(const struct server *srv, struct buf *out)
{
    char labels[64];
    prom_family(out, "ringpush_xcore_ring_depth", "gauge",
                "Messages published and not yet consumed in the ring from one shard to another.");
    for (unsigned f = 0; f < srv->nshards; f++) {
        for (unsigned t = 0; t < srv->nshards; t++) {
            snprintf(labels, sizeof(labels), "from=\"%u\",to=\"%u\"", f, t);
            prom_sample(out, "ringpush_xcore_ring_depth", labels,
                        spsc_depth(&srv->rings[f * srv->nshards + t]));
        }
    }
    return buf_failed(out) ? -ENOMEM : 0;
}

static int render_storage(const struct server *srv, struct buf *out)
{
    struct storage_stats s;
    storage_stats_get(srv->storage, &s);
    prom_family(out, "ringpush_storage_groups_total", "counter",
                "Group commits (one RocksDB write each) issued by the storage writer.");
    prom_sample(out, "ringpush_storage_groups_total", NULL, s.groups);
    prom_family(out, "ringpush_storage_batches_total", "counter",
                "Write batches completed (one per shard submit).");
    prom_sample(out, "ringpush_storage_batches_total", NULL, s.submits);
    prom_family(out, "ringpush_storage_ops_total", "counter", "Puts and deletes written.");
    prom_sample(out, "ringpush_storage_ops_total", NULL, s.ops);
    prom_family(out, "ringpush_storage_write_errors_total", "counter",
                "Group commits that failed.");
    prom_sample(out, "ringpush_storage_write_errors_total", NULL, s.write_errors);
    prom_family(out, "ringpush_storage_fenced_total", "counter",
                "Write batches failed unwritten because the batch their shard submitted "
                "before them failed (write_pipeline > 1).");
    prom_sample(out, "ringpush_storage_fenced_total", NULL, s.fenced);
    prom_family(out, "ringpush_storage_reads_total", "counter", "Reads completed.");
    prom_sample(out, "ringpush_storage_reads_total", NULL, s.reads);
    prom_family(out, "ringpush_storage_read_errors_total", "counter", "Reads that failed.");
    prom_sample(out, "ringpush_storage_read_errors_total", NULL, s.read_errors);

    double size_bounds[STG_HIST_N - 1], commit_bounds[STG_HIST_N - 1];
    for (unsigned i = 0; i < STG_HIST_N - 1; i++) {
        size_bounds[i] = (double)(1u << i);
        commit_bounds[i] = (double)(STG_HIST_COMMIT_US << i) / 1e6;
    }
    prom_family(out, "ringpush_storage_group_batches", "histogram",
                "Write batches per group commit.");
    prom_histogram(out, "ringpush_storage_group_batches", NULL, size_bounds, s.group_submits_hist,
                   STG_HIST_N - 1, (double)s.submits);
    prom_family(out, "ringpush_storage_commit_seconds", "histogram",
                "Duration of one group commit (RocksDB write, WAL fsync under durability=sync).");
    prom_histogram(out, "ringpush_storage_commit_seconds", NULL, commit_bounds, s.commit_us_hist,
                   STG_HIST_N - 1, (double)s.commit_us_sum / 1e6);
    return buf_failed(out) ? -ENOMEM : 0;
}

static int render_admin(const struct admin_counters *ac, struct buf *out)
{
    prom_family(out, "ringpush_admin_requests_total", "counter",
                "Admin HTTP requests answered, by result.");
    prom_sample(out, "ringpush_admin_requests_total", "result=\"ok\"",
                ac->requests - ac->unauthorized - ac->errors);
    prom_sample(out, "ringpush_admin_requests_total", "result=\"unauthorized\"", ac->unauthorized);
    prom_sample(out, "ringpush_admin_requests_total", "result=\"error\"", ac->errors);
    prom_family(out, "ringpush_admin_timeouts_total", "counter",
                "Admin connections closed for being slow or idle.");
    prom_sample(out, "ringpush_admin_timeouts_total", NULL, ac->timeouts);
    prom_family(out, "ringpush_admin_idle_closed_total", "counter",
                "Idle admin connections closed to make room for a new one.");
    prom_sample(out, "ringpush_admin_idle_closed_total", NULL, ac->idle_closed);
    prom_family(out, "ringpush_admin_connections", "gauge", "Admin HTTP connections open.");
    prom_sample(out, "ringpush_admin_connections", NULL, ac->conns);
    prom_family(out, "ringpush_backups_total", "counter", "Backups (checkpoints) by result.");
    prom_sample(out, "ringpush_backups_total", "result=\"ok\"", ac->backups_ok);
    prom_sample(out, "ringpush_backups_total", "result=\"failed\"", ac->backups_failed);
    return buf_failed(out) ? -ENOMEM : 0;
}

int metrics_render(const struct server *srv, const struct admin_counters *ac, struct buf *out)
{
    prom_family(out, "ringpush_shards", "gauge", "Shard threads.");
    prom_sample(out, "ringpush_shards", NULL, srv->nshards);
    if (render_shards(srv, out) || render_chat(srv, out) || render_rings(srv, out) ||
        render_storage(srv, out) || render_admin(ac, out))
        return -ENOMEM;
    return 0;
}
