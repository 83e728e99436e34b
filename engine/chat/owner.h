/*
 * The owner role: for every conversation C with hash(C) % nshards == this
 * shard, its sequence counter, dedup window, membership and log writes.
 *
 * Requests arrive forwarded from the users' homes (struct fwd) and wait in a
 * bounded per-conversation queue. The conversation's state is read from
 * storage on first use (requests queue meanwhile). At each flush, queued
 * requests are validated and staged into the shard's batch in arrival order
 * (batches earlier in flight are not waited for: see io.h): a send takes seq = last seq + 1 and
 * puts the entry, its dedup record and the conversation's new last_seq/last_ts. A request that
 * changes membership or rewrites the log (group ops, recall) is a barrier: it
 * is staged alone at the end of its conversation's part of the batch, and
 * nothing more of that conversation is staged until it is durable.
 *
 * Only when the batch is durable are the replies sent and the entries handed
 * to the members' homes (one message per home shard). When it fails, every
 * seq it used is given back (the counters return to their durable values) and
 * the senders get `unavailable`; storage fails every batch submitted after
 * it too, and nothing is staged until those are back: the log stays gapless.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_OWNER_H
#define RP_CHAT_OWNER_H

#include "engine/chat/map.h"
#include "engine/chat/xfer.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

#define OWNER_QUEUE_MAX    4096u       /* requests waiting per conversation */
#define OWNER_QUEUED_BYTES (64u << 20) /* and in all of a shard's conversations */
#define OWNER_DEDUP_MAX    262144u     /* dedup records kept in memory per shard (default) */
#define OWNER_DEDUP_MIN_MS 60000u      /* a live record is kept this long, below dedup_hard */
#define OWNER_DEDUP_HARD   1048576u    /* dedup records kept per shard at most (default) */
#define OWNER_CONVS_MAX    200000u     /* conversations kept loaded before idle ones go */
#define OWNER_MEMBER_PAGE  4096u       /* member rows per storage scan while loading */

enum oconv_state { OC_LOADING, OC_READY };

struct omember {
    uint8_t role;
    uint64_t joined_seq;
    char *nick, *remark; /* heap, NUL-terminated, may be NULL */
};

struct orec;

struct oconv {
    char id[2 + 64 + 1 + 64 + 1];
    uint32_t idlen;
    uint8_t kind; /* enum conv_kind */
    uint8_t state;
    bool exists; /* direct: always; group: created (and maybe dismissed) */
    bool dismissed, open;
    uint64_t last_seq, last_ts;     /* durable */
    uint64_t staged_seq, staged_ts; /* including what is staged or in flight */
    char *name, *notice, *owner;    /* group meta, heap */
    struct map members;             /* user -> struct omember * */
    uint32_t *home_count;           /* per shard: members homed there */
    struct fwd *qhead, *qtail;
    uint32_t qlen;
    uint32_t busy;     /* records staged or in flight */
    bool barrier;      /* a barrier request is staged or in flight */
    bool queued_ready; /* on the owner's ready list */
    struct oconv *next_ready;
    struct map dedup; /* sender|cmid -> struct odedup * */
    /*
     * Until this time (ms) a cmid missing from dedup may still have a live
     * record in storage, so a send must read it: set at load from the durable
     * last_ts (every record on disk is at least that old), and raised when a
     * live record is evicted for memory or a write fails. After it, dedup is
     * authoritative and a new cmid needs no read.
     */
    uint64_t dd_read_until;
    uint64_t used_ms;
    bool meta_dirty;                /* something of it is staged: write its metadata */
    const struct ochange *meta_chg; /* the staged barrier's change, if any */
};

struct odedup;

struct owner {
    struct map convs; /* id -> struct oconv * */
    struct oconv *ready_head;
    uint64_t queued_bytes; /* of the requests waiting in conversations (owner_fwd_cost) */
    uint32_t ndedup;
    uint32_t dedup_max;  /* past this many records, live ones older than a minute go */
    uint32_t dedup_hard; /* past this many, the oldest go whatever their age */
    /* every dedup record of the shard in creation (so time) order: the tick expires
     * from the head, so it costs what it expires */
    struct odedup *dq_head, *dq_tail;
    /* the queue's clock: the wall clock's steps forward, none of its steps back */
    uint64_t dd_mono, dd_wall;
    uint64_t dd_reads;         /* dedup records read from storage */
    uint64_t dd_reads_skipped; /* new cmids staged with no read */
};

/* What a waiting request counts against OWNER_QUEUED_BYTES: its allocation. */
static inline uint64_t owner_fwd_cost(const struct fwd *f)
{
    return f->size;
}

int owner_init(struct chat *c);
void owner_deinit(struct chat *c);

/* A request forwarded to this owner (f transferred). */
void owner_on_fwd(struct chat *c, struct fwd *f);

/* Stage queued work into the batch (only called when io_can_stage()). */
void owner_stage(struct chat *c);

/*
 * Once a second: expire dedup records (O(expired)), evict live ones past
 * dedup_max once a minute old and past dedup_hard at any age (their
 * conversations then read storage again for a window), and
 * unload idle conversations when there are too many.
 */
void owner_tick(struct chat *c);

/* After each flush: evict the oldest dedup records past dedup_hard (O(1)
 * below it), so memory never holds more than a loop pass's sends past it. */
void owner_dedup_bound(struct chat *c);

/*
 * For group.c: the conversation's staged log position and the helpers that
 * stage an entry and queue its completion. Returns 0 or -ENOMEM.
 */
struct ochange;
struct orec;
/*
 * Stage an entry of the given type (data: the raw `data` map for events;
 * target: for recall entries) written by f's user and device, with chg (a
 * group change, transferred) applied and reply (transferred) sent to f once
 * durable; *out (may be NULL) is the record. The conversation becomes a
 * barrier unless f is a send. On error nothing was kept, but the batch may
 * hold some of the entry's puts: the caller must io_poison().
 */
int owner_stage_entry(struct chat *c, struct oconv *cv, struct fwd *f, struct strv type,
                      const uint8_t *data, uint32_t dlen, bool has_target, uint64_t target,
                      struct ochange *chg, struct rbuf *reply, struct orec **out);

/* Stage a change with no entry (group.remark): a barrier, replied to when durable. */
int owner_stage_noentry(struct chat *c, struct oconv *cv, struct fwd *f, struct ochange *chg,
                        struct rbuf *reply);

/* Member bookkeeping for group.c (keeps the per-home counts right). */
struct member_rec;
int owner_member_put(struct chat *c, struct oconv *cv, struct strv user,
                     const struct member_rec *r);
void owner_member_del(struct chat *c, struct oconv *cv, struct strv user);

/* The member record of user in cv, or NULL. */
struct omember *owner_member(struct oconv *cv, struct strv user);

/* Put the conversation's metadata (with chg applied, when not NULL) into the batch. */
int owner_put_meta(struct chat *c, struct oconv *cv, const struct ochange *chg);

/*
 * Between owner.c and owner_load.c (loading a conversation's metadata and
 * members from storage); not for other modules.
 */

/* The conversation id, loaded or loading; when absent it is created and its
 * load started. NULL with *err set when it cannot be: -EINVAL (a malformed
 * id), -ENOMEM, or -RP_EFULL (every read slot is taken: server busy). */
struct oconv *owner_conv_get(struct chat *c, struct strv id, int *err);

/* Free cv with its queued requests, dedup records and members; the caller has
 * taken it out of the conversation map (or never put it there). */
void owner_conv_free(struct chat *c, struct oconv *cv);

/* Until rec_ts + dedup_window, sends of cv ask storage about a cmid memory does not know. */
void owner_dd_must_read(struct chat *c, struct oconv *cv, uint64_t rec_ts);

/* Start the per-request reads of cv's queued requests. */
void owner_aux_reads(struct chat *c, struct oconv *cv);

/* Put cv on the list that owner_stage walks, when it has requests queued. */
void owner_mark_ready(struct chat *c, struct oconv *cv);

#endif
