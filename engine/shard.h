/*
 * A shard: one pinned thread running one io_uring loop, owning a listener, a
 * table of connections, a provided-buffer ring for receives, a timing wheel,
 * the inbound ends of the cross-shard rings and the chat state of its users
 * and conversations. Shards share nothing mutable; see engine/xcore.h.
 *
 * The loop has fixed phases (shard_run):
 *   reap completions → drain cross-core inboxes and storage completions →
 *   expire timers → flush sends queued this iteration → free dead
 *   connections → one submit-and-wait.
 */
#ifndef RP_ENGINE_SHARD_H
#define RP_ENGINE_SHARD_H

#include "base/spsc.h"
#include "base/wake.h"
#include "engine/bufring.h"
#include "engine/chat/chat.h"
#include "engine/config.h"
#include "engine/conn.h"
#include "engine/stats.h"
#include "protocol/req.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct server;
struct admin;

struct shard {
    unsigned id;
    struct server *srv;
    const struct config *cfg;
    pthread_t thread;

    struct io_uring ring;
    int ring_fd; /* published before the shard reports ready */
    int listen_fd;
    int event_fd;       /* storage completions and stop requests */
    uint64_t event_val; /* read target of the eventfd */
    struct wake wake;   /* set while the loop may block */
    bool stopping;
    bool quiet;         /* stopping, and counted in srv->nquiet */
    bool accept_paused; /* out of descriptors: resumes at the next tick or closed connection */

    struct bufring rb; /* provided receive buffers */
    bool recv_starved; /* a multishot recv ended with -ENOBUFS */

    /* connections: a slab indexed by slot, free slots chained */
    struct conn *conns;
    uint32_t nconns; /* capacity */
    uint32_t free_head;
    uint32_t live;
    uint32_t flush_head;   /* connections with a reply queued: sent this iteration */
    uint32_t push_head;    /* connections with only pushes queued, oldest first: */
    uint32_t push_tail;    /* sent PUSH_BUDGET per iteration */
    uint32_t dead_head;    /* connections whose last operation completed */
    uint32_t rearm_head;   /* connections whose multishot recv must be re-armed */
    uint32_t handoff_head; /* edge connections waiting to be handed to their home */
    uint32_t ready_head;   /* sessions that became ready: replay their held frames */
    conn_id_t *closed;     /* sessions closed this iteration, told to the chat layer later */
    uint32_t nclosed, closed_cap;
    conn_id_t *drained; /* congested connections whose queue drained */
    uint32_t ndrained, drained_cap;

    /* timing wheel: one slot per second */
    uint32_t *wheel;
    uint32_t tick; /* seconds since start */
    struct __kernel_timespec tick_ts;

    /* cross-shard rings: in[i] is fed by shard i, out[i] feeds shard i */
    struct spsc **in;
    struct spsc **out;
    bool *out_dirty;
    /* room_wanted[i]: a message for shard i waits for room in out[i]. Set
     * here when a push finds the ring full; shard i clears it when it has
     * freed slots and wakes this shard if it sleeps. */
    atomic_bool *room_wanted;

    struct req_decoder dec;
    struct req_limits lim;
    struct chat *chat;
    struct admin *admin; /* shard 0 only: the admin HTTP server */
    uint64_t now_ms;     /* wall clock, read once per iteration */
    struct shard_stats stats;
};

/* Creates the shard's resources that need no thread (rings between shards are
 * made by the server). 0 or -errno. */
int shard_init(struct shard *sh, struct server *srv, unsigned id);
void shard_deinit(struct shard *sh);

/* The thread body: sets up the io_uring on this thread, then runs the loop
 * until stopped. */
void *shard_main(void *arg);

/* Wakes the shard if it may be sleeping (any thread). */
void shard_notify(struct shard *sh);

/* Asks the shard to shut down gracefully (any thread). */
void shard_stop(struct shard *sh);

/* The home shard of a user: hash_bytes(user) % nshards. */
unsigned shard_of(const struct server *srv, const char *id, size_t len);

/* Queue a cross-shard message (shard thread only); published at the end of
 * the iteration. 0 or -RP_EFULL. */
int shard_xsend(struct shard *sh, unsigned dst, const struct xmsg *m);

#endif
