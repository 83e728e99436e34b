/*
 * The chat domain of one shard, sans-I/O: the home role (sessions, presence,
 * cursors, the online index, catch-up) for the users whose home is this shard,
 * and the owner role (sequencing, dedup, membership, log writes) for the
 * conversations this shard owns (ARCHITECTURE.md).
 *
 * The runtime (engine/) owns sockets, rings and storage threads; it calls the
 * chat_on_* entry points with decoded input and carries out what the chat layer
 * asks for through struct chat_env. The chat layer never touches a socket, an
 * io_uring or RocksDB, so every protocol rule is testable with a fake env.
 *
 * Thread: a struct chat belongs to one shard thread; every function here and
 * every env callback is called on that thread only.
 */
#ifndef RP_ENGINE_CHAT_CHAT_H
#define RP_ENGINE_CHAT_CHAT_H

#include "base/rbuf.h"
#include "protocol/req.h"
#include "protocol/strv.h"
#include "storage/storage.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * A connection as the runtime names it: (slot << 32 | generation). A stale id
 * (the connection has gone) is recognised by the runtime and ignored.
 */
typedef uint64_t conn_id_t;

/*
 * One element of a cross-shard ring. Kinds below XMSG_CHAT_BASE belong to the
 * runtime; the chat layer defines its own from XMSG_CHAT_BASE up. `ptr`, when
 * set, is a heap object whose ownership passes to the receiving shard.
 */
struct xmsg {
    uint16_t kind;
    uint16_t src; /* sending shard, filled in by the runtime */
    uint32_t u32;
    uint64_t u64;
    void *ptr;
};
#define XMSG_CHAT_BASE 256u

/*
 * Frame bounds (PROTOCOL §1: the server never sends a frame over max_frame).
 * A message's push, catch-up frame or history page adds at most
 * CHAT_FRAME_RESERVE bytes to its body (ids at their longest: conv 131, from
 * 64, dev 32, cmid 64, type 16; the keys, seq and ts; a history reply's head
 * and conv), so max_body is held to max_frame - CHAT_FRAME_RESERVE.
 * CHAT_MAX_FRAME_MIN is what the largest frames without a body need: a
 * group.info reply or an update event with a 4,096-byte notice, a kick
 * event with 20 ids of 64 bytes.
 */
#define CHAT_FRAME_RESERVE 1024u
#define CHAT_MAX_FRAME_MIN 8192u

/* Limits and policies of PROTOCOL §8, immutable once the shards run. */
struct chat_config {
    uint32_t heartbeat_ms;
    uint32_t max_frame;
    uint32_t max_body;
    uint32_t catchup_limit;
    uint32_t write_pipeline; /* write batches in flight per shard, 1..IO_FLIGHT_MAX (0: 1) */
    uint64_t dedup_window_ms;
    uint32_t dedup_memory; /* dedup records an owner keeps, at most (0: OWNER_DEDUP_HARD) */
    /* how long a moved cursor may wait for its write, so that the moves of a
     * while share it (0: the next batch) */
    uint32_t cursor_delay_ms;
    uint64_t recall_window_ms;
    uint32_t max_devices;
    uint32_t max_group_size;
    uint32_t outbound_limit; /* a connection's queue bound; bounds the pushes held for it too */
    bool dm_friends_only;    /* dm_policy = friends */
    uint64_t run_id;         /* differs in every run of the process (never 0) */
    uint8_t gid_key[32];     /* secret: keys the part of generated group ids no one can guess */
};

struct chat_admin_result;

/* What the runtime does for the chat layer. All calls on the shard's thread. */
struct chat_env {
    void *rt;
    unsigned shard;
    unsigned nshards;
    const struct chat_config *cfg;

    /*
     * Queue a complete frame (4-byte length prefix + map) for a connection of
     * this shard. Takes its own reference to frame; the caller keeps its own.
     * Frames queued for one connection go out in call order. Returns 0, or
     * -ENOENT (the connection is gone or closing), or -RP_EFULL (its outbound
     * queue went over the bound: the runtime has already started closing it
     * with `bye slow`, and chat_on_close follows).
     */
    int (*send)(void *rt, conn_id_t conn, struct rbuf *frame);

    /*
     * As send, for a push (an entry or event the connection did not ask for):
     * the runtime may let it wait its turn behind other connections' pushes,
     * while replies go out first. Order per connection is call order across
     * send and push alike. May be NULL (push = send).
     */
    int (*push)(void *rt, conn_id_t conn, struct rbuf *frame);

    /*
     * The session of a hello'd connection may take requests now (its user's
     * state is loaded). Until then the runtime holds the connection's frames:
     * nothing reaches chat_on_request before this call. Call it once per
     * session; calling it for a gone connection is harmless.
     */
    void (*ready)(void *rt, conn_id_t conn);

    /*
     * Hold the connection's frames again, in order, until the next ready
     * call: a session with HOME_QUERIES_MAX queries in flight takes no
     * more requests until one ends. May be NULL (never held).
     */
    void (*hold)(void *rt, conn_id_t conn);

    /*
     * True when the connection's outbound queue is past its low-water mark
     * (half the outbound bound): a sender of many frames (catch-up) should
     * pause; chat_on_drained follows once the queue is low again. False for a
     * gone connection. May be NULL (never congested).
     */
    bool (*congested)(void *rt, conn_id_t conn);

    /* Close a connection once what is queued for it has gone out, preceded by
     * {"op":"bye","reason":reason} unless reason is NULL. chat_on_close follows. */
    void (*close)(void *rt, conn_id_t conn, const char *reason);

    /*
     * Send m to shard dst's chat_on_xmsg (dst may be this shard). Messages
     * from one shard to another arrive in order. Returns 0 or -RP_EFULL (the
     * ring to dst is full: keep m and retry on a later iteration, or refuse the
     * request with `unavailable`). On success m->ptr is transferred.
     */
    int (*xsend)(void *rt, unsigned dst, const struct xmsg *m);

    /* storage_write / storage_read on this shard's queues (see storage.h);
     * the completion arrives through chat_on_storage with the same tag. */
    int (*write)(void *rt, struct stg_batch *b, uint64_t tag);
    int (*read)(void *rt, const struct stg_read *q, uint64_t tag);

    /* Wall clock, milliseconds since the epoch (read once per loop iteration). */
    uint64_t (*now_ms)(void *rt);

    /* The answer to a chat_admin_* call made on this shard with `tag`. res and
     * every view in it are valid for the call only. May be NULL on shards that
     * never make admin calls. */
    void (*admin_done)(void *rt, uint64_t tag, const struct chat_admin_result *res);
};

struct chat;

/* ---- Counters for /metrics ---- */

/* Upper bounds of the push latency histogram, milliseconds (CHAT_LAT_N of
 * them, then +Inf), and of the catch-up size histogram, entries. */
#define CHAT_LAT_N 12
#define CHAT_LAT_BOUNDS_MS                                                                         \
    {                                                                                              \
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000                                       \
    }
#define CHAT_CU_N 9
#define CHAT_CU_BOUNDS                                                                             \
    {                                                                                              \
        0, 1, 5, 10, 50, 100, 500, 1000, 5000                                                      \
    }

/*
 * Written only by the chat's own shard thread; another thread (the metrics
 * endpoint) may read them without a lock and see values one iteration old.
 */
struct chat_stats {
    uint64_t entries;    /* log entries this shard made durable as owner */
    uint64_t deliveries; /* entries pushed to a device by this shard as home (live and catch-up) */
    /* time from an entry's ts to its arrival at each home shard holding an
     * online member: sequencing, the durable write and the hop between shards */
    uint64_t push_latency_hist[CHAT_LAT_N + 1];
    uint64_t push_latency_sum_ms;
    uint64_t catchups;                    /* sessions that finished a catch-up */
    uint64_t catchup_hist[CHAT_CU_N + 1]; /* entries pushed per catch-up */
    uint64_t catchup_entries;
    uint64_t catchup_held_bytes;   /* values of catch-up reads held in memory now (gauge) */
    uint64_t reads_waiting;        /* login reads waiting for a read slot now (gauge) */
    uint64_t reads_waited;         /* login reads that had to wait for one, since start */
    uint64_t reads_cancelled;      /* of those, dropped when their session closed first */
    uint64_t user_loads_abandoned; /* loads of a user's state stopped: its sessions left */
    uint64_t queries_paused;  /* times a session was held at HOME_QUERIES_MAX queries in flight */
    uint64_t dedup_records;   /* dedup records the owner keeps in memory now (gauge) */
    uint64_t cursors_waiting; /* moved cursors not yet durable: waiting or being written (gauge) */
};

/* The chat's counters; valid as long as the chat. */
const struct chat_stats *chat_stats_get(const struct chat *c);

/* ---- Admin API (PROTOCOL §7) ---- */

#define CHAT_ADMIN_DEVICES_MAX 64

struct chat_admin_result {
    /* 0, or: -RP_EREQUEST 400, -EPERM/-EACCES 403, -ENOENT 404, -EEXIST 409,
     * -RP_ETOOLARGE 413, -EAGAIN 429, -RP_ESTORAGE/-RP_EFULL/-RP_ECLOSED 503,
     * anything else 500 (see code_from_err in protocol/enc.h). */
    int err;
    const char *msg; /* a short static text when err != 0 */
    /* chat_admin_send */
    struct strv conv;
    uint64_t seq, ts;
    bool dup;
    /* chat_admin_presence */
    bool online;
    uint32_t ndevices;
    struct strv devices[CHAT_ADMIN_DEVICES_MAX];
    /* chat_admin_kick: sessions closed */
    uint32_t kicked;
};

/*
 * The backend API. Each may be called on any shard; the chat layer routes it
 * to the user's home or the conversation's owner and answers through
 * env->admin_done(tag, result) on the calling shard.
 *
 * chat_admin_send: a send on behalf of `from` with the same rules as §5 (req
 * is a decoded, valid OP_SEND: to or group, cmid, type, body); there is no
 * sending device, so every device of `from` gets the push too. Result: conv,
 * seq, ts, dup.
 * chat_admin_presence: online and the devices of `user`'s sessions.
 * chat_admin_kick: closes every session of `user` with `bye kicked`; kicked =
 * how many.
 * Views in the arguments are valid for the call only.
 */
void chat_admin_send(struct chat *c, uint64_t tag, struct strv from, const struct req *req);
void chat_admin_presence(struct chat *c, uint64_t tag, struct strv user);
void chat_admin_kick(struct chat *c, uint64_t tag, struct strv user);

/* env is copied. NULL on ENOMEM. */
struct chat *chat_new(const struct chat_env *env);
void chat_free(struct chat *c);

/*
 * A connection authenticated as (user, device) now lives on this shard, its
 * home. The chat layer answers the hello (id hello_id) itself: `conflict` +
 * close when max_devices is reached; it replaces an older session of the same
 * (user, device) with `bye replaced`; the `ok` reply (protocol/enc.h
 * enc_hello_ok with this shard's index) once the user's state is loaded (at
 * once when another session has it loaded already), so that every entry made
 * durable after the ok reaches the device; then catch-up and `synced` if
 * resume. If the state cannot be read: `unavailable` + close.
 * user and device are views valid for the call only.
 */
void chat_on_hello(struct chat *c, conn_id_t conn, struct strv user, struct strv device,
                   bool resume, uint32_t hello_id);

/* A decoded, valid request (any op but hello and ping) from a hello'd connection
 * of this shard. The views in req are valid for the call only. */
void chat_on_request(struct chat *c, conn_id_t conn, const struct req *req);

/* A connection that was congested (env->congested said so) has drained. */
void chat_on_drained(struct chat *c, conn_id_t conn);

/* A hello'd connection is closing; its id is invalid after this returns. */
void chat_on_close(struct chat *c, conn_id_t conn);

/* A message from shard m->src (kind >= XMSG_CHAT_BASE). The chat layer owns m->ptr. */
void chat_on_xmsg(struct chat *c, const struct xmsg *m);

/* Frees what m carries without acting on it: used at shutdown for messages
 * still in a ring after every shard stopped (called on the main thread once
 * the shard threads have joined). */
void chat_discard_xmsg(struct chat *c, const struct xmsg *m);

/* A storage completion for a tag this chat used. d->res is transferred. */
void chat_on_storage(struct chat *c, struct stg_done *d);

/* True when nothing of this chat waits to be written (no batch staged or in
 * flight, no cursor waiting for its batch), no read is in flight and no
 * message waits for room in a ring to another shard: nothing here can give
 * another shard work without new input. A stopping runtime keeps its loop
 * running until this holds on every shard at once (or its grace time is
 * over), so that the last acks and reads of departing clients are kept. */
bool chat_quiescent(const struct chat *c);

/* True when a flush now would stage work that the last one could not (the
 * loop must not sleep on it: e.g. requests given back by a failed batch that
 * was settled after staging). */
bool chat_pending(const struct chat *c);

/* True when a message for shard dst waits for room in the ring to dst, and
 * only for that: a loop that sees room there must flush before it sleeps. */
bool chat_waits_for_room(const struct chat *c, unsigned dst);

/* Called about once a second. */
void chat_on_tick(struct chat *c);

/* When a flush is next due without new input (wall clock, ms: cursors that
 * will have waited out cursor_delay_ms), or 0 for none. A loop that sleeps
 * wakes by then. */
uint64_t chat_next_due(const struct chat *c);

/* The runtime is stopping: from now on nothing waits to be written for
 * longer than the next batch (cursors do not wait out cursor_delay_ms). */
void chat_stop(struct chat *c);

/* Called once per loop iteration, after all input was handled and before the
 * runtime flushes: submit this iteration's write batch (group commit), etc. */
void chat_flush(struct chat *c);

#endif
