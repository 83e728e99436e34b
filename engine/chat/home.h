/*
 * The home role: for every user U with hash(U) % nshards == this shard, U's
 * sessions (one per device), presence, ack and read cursors, friends, and the
 * online index "group conversation -> local users with a session".
 *
 * A user's state is read from storage when its first session arrives (its
 * conversation list, read cursors, friends and each conversation's last
 * seq/ts) and dropped when its last session closes. Requests of its sessions
 * are answered here when the home holds what they need (ack, read, sync,
 * history, group.list, friends) and forwarded to the conversation's owner
 * otherwise (send, recall, group ops).
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_HOME_H
#define RP_CHAT_HOME_H

#include "engine/chat/map.h"
#include "engine/chat/xfer.h"

#include "base/buf.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

/* live pushes held per session during catch-up (their bytes: at most outbound_limit / 2) */
#define HOME_HELD_MAX    65536u
#define HOME_CONVS_MAX   10000u /* conversations of a user read at login */
#define HOME_LEFT_MAX    1000u  /* removal records of a user read at login */
#define HOME_FRIENDS_MAX 10000u
/* queries (history, group.list) of one session reading storage at once; past
 * them its connection's further frames wait, in order (chat_env.hold) */
#define HOME_QUERIES_MAX 8u
/* cursors waiting for their write past which they are written without
 * waiting out cursor_delay_ms (each costs a map node until then) */
#define HOME_CURSORS_EAGER 65536u
/* after a failed cursor write (a full disk, say), the pause before the next */
#define HOME_CURSORS_RETRY_MS 1000u

enum user_state { U_LOADING, U_READY, U_FAILED };
enum session_state { S_WAIT_USER, S_CATCHUP, S_LIVE };

/* One of a user's conversations, as its home knows it. */
struct uconv {
    uint8_t kind, role;
    uint64_t joined_seq;
    uint64_t last_seq, last_ts; /* from storage at login, then from deliveries */
    uint64_t read_seq;
};

/* A group the user was removed from, maybe more than once (invited back in
 * between): a device that has not acked a removal event yet gets the span of
 * membership that ended with it, at login. */
#define HOME_LEFT_SPANS 4u /* removals kept per group; the oldest goes */
struct uleft_span {
    uint64_t left_seq; /* the removal event */
    uint64_t joined_seq;
    uint64_t left_ts; /* when: after STG_LEFT_KEEP_MS it no longer counts */
};
struct uleft {
    uint32_t n;
    struct uleft_span s[HOME_LEFT_SPANS]; /* by left_seq, ascending */
};

struct ufriend {
    uint8_t state; /* enum friend_state */
    uint64_t ts;
    char *note;
};

struct held;
struct cu_part;

/* What a session needs only until it goes live (session.c): the deliveries
 * held meanwhile and its catch-up. Freed when it goes live, so a live session
 * carries none of it. */
struct session_pre {
    struct held *held_head, *held_tail;
    uint32_t nheld;
    uint64_t held_bytes; /* of the frames held */
    struct map caps;     /* conv -> the event that removed the user while this
                            session's catch-up was being read: nothing after it */
    struct cu_part *cu;  /* catch-up results, one per conversation read */
    uint32_t ncu;
    uint32_t cu_end; /* parts below it are read or being read */
    /* where a catch-up paused while the connection's outbound queue drains:
     * part cu_i, entries below cu_j of it still to push (counting down) */
    uint32_t cu_i, cu_j;
    uint32_t cu_sent;       /* entries pushed by the catch-up so far */
    uint64_t cu_read_bytes; /* of the parts read so far (dropped reads too) */
    uint32_t cu_read_parts;
    bool cu_started, cu_paused;
    bool cu_failed; /* a catch-up read failed: no synced, the session ends */
};

struct session {
    struct ilink by_conn; /* home.conns */
    conn_id_t conn;
    struct user *u;
    struct session *next;    /* the user's sessions */
    struct map acks;         /* conv -> ack seq of this device */
    struct map sent;         /* conv -> highest seq pushed in this session */
    struct session_pre *pre; /* until the session is live (state S_LIVE), else NULL */
    uint32_t refs;           /* reads in flight that hold it */
    uint32_t reads_out;      /* of those, its own (acks, catch-up): io_cancel_waiting's */
    uint32_t hello_id;
    uint32_t queries; /* in flight: session_query_start, not yet ended */
    uint8_t state;
    bool resume, closed;
    bool paused; /* its connection's frames are held until a query ends */
    uint8_t devlen;
    char dev[]; /* devlen bytes and a NUL */
};

struct user {
    struct ilink by_id; /* home.users */
    struct session *sessions;
    struct map convs;         /* conv -> struct uconv * */
    struct map gone;          /* convs left while loading: ignored in the loaded list */
    struct map left;          /* group conv -> struct uleft *, removed within STG_LEFT_KEEP_MS */
    struct map friends;       /* peer -> struct ufriend * */
    struct stg_result *fpend; /* pending friend sides read while loading */
    uint32_t refs;            /* sessions + reads in flight */
    uint32_t pending;
    uint32_t nsessions;
    uint8_t state;
    uint8_t idlen;
    bool friends_cut;          /* its friend rows are not all in memory: the read at load stopped at
                                  its limit, or rows past HOME_FRIENDS_MAX came since (friend.c) */
    uint32_t friends_live;     /* of friends, those not FRIEND_NONE: friends and requests */
    bool fpend_cut;            /* the read of its pending friend sides did */
    bool swept;                /* loaded for the friend sweep (friend.h), which holds a reference */
    uint32_t friends_prune_at; /* friend.c: entries past which old removal marks go */
    uint64_t friends_pruned_ts; /* the time of the newest mark that went (0: none) */
    char id[];                  /* idlen bytes and a NUL */
};

/* Cursor values by encoded cursor key (values.h), grouped by the key's
 * (user, device) prefix: a login takes its device's own without a walk over
 * every key waiting. */
struct curs {
    struct map devs; /* (user, device) prefix -> struct map * (cursor key -> seq) */
    size_t n;        /* keys in all of them */
};

struct home {
    struct imap users;      /* struct user, by id */
    struct imap conns;      /* struct session, by connection */
    struct map index;       /* group conv -> struct idx * */
    struct curs cursors;    /* to be written */
    uint64_t cursors_since; /* when the oldest of them was queued */
    uint64_t cursors_retry; /* after a failed write: not staged again before (0: none) */
    struct curs written;    /* in a batch not yet durable */
    /* friend.c: friend row key -> struct fkey, while rows of it are pending */
    struct map friend_keys;
    uint64_t friend_gen_last;
    uint64_t friend_ts_last; /* the time of the last friend op: strictly increasing */
    /* friend.c: the sweep of pending friend sides left by an earlier run */
    struct buf sweep_from; /* where the next page starts (empty: at the first) */
    struct buf sweep_page; /* where the page read last started */
    uint32_t sweep_loads;  /* users loaded for it and not loaded yet */
    uint8_t sweep_state;
    bool sweep_failed;   /* a load of the page failed */
    uint8_t sweep_pause; /* ticks to wait after a failed load (doubling) */
    uint8_t sweep_wait;  /* ticks still to wait */
};

int home_init(struct chat *c);
void home_deinit(struct chat *c);

void home_on_request(struct chat *c, conn_id_t conn, const struct req *req);
void home_on_reply(struct chat *c, struct rpl *r);
void home_on_deliver(struct chat *c, struct dlv *d);
void home_on_user_frame(struct chat *c, struct ufr *u);

/* Stage the cursors waiting to be written into the batch, once the oldest
 * has waited cursor_delay_ms (or HOME_CURSORS_EAGER are waiting, or the chat
 * is stopping): the moves of a while share one write per cursor. After a
 * failed write they wait HOME_CURSORS_RETRY_MS before the next try. */
void home_stage(struct chat *c);

/* The user if loaded here. */
struct user *home_user(struct chat *c, struct strv id);

/* A session by connection, or NULL. */
struct session *home_session(struct chat *c, conn_id_t conn);

/* Enter u or s in the home's tables (0 or -ENOMEM), or take it out. */
int home_user_add(struct chat *c, struct user *u);
void home_user_remove(struct chat *c, struct user *u);
int home_session_add(struct chat *c, struct session *s);
void home_session_remove(struct chat *c, struct session *s);

/* Online index maintenance (session.c and home.c). */
int home_index_add(struct chat *c, struct strv conv, struct user *u, struct uconv *uc);
void home_index_del(struct chat *c, struct strv conv, struct user *u);

/* Add or update one of u's conversations. NULL on ENOMEM. */
struct uconv *home_uconv_put(struct chat *c, struct user *u, struct strv conv, uint8_t kind,
                             uint64_t joined_seq);
void home_uconv_del(struct chat *c, struct user *u, struct strv conv, uint64_t left_seq);
/* The highest seq a device of u can have received in conv (its last seq as
 * the home knows it; for a group u left, the last removal event); 0 when conv
 * is not u's. */
uint64_t home_seq_bound(const struct user *u, struct strv conv);
/* The user's read cursor in a conversation as clients see it: never below
 * joined_seq - 1 (what came before the user joined is not theirs to read),
 * never above last_seq. sync reports it, and a read moves it only past it. */
uint64_t home_read_seq(const struct uconv *uc);
/* Remember that u was removed from group conv by the event at left_seq (at
 * left_ts); at most HOME_LEFT_MAX groups, the one removed from longest ago
 * making room. */
void home_left_put(struct user *u, struct strv conv, uint64_t left_seq, uint64_t joined_seq,
                   uint64_t left_ts);

/* Queue a cursor write (seq only moves forward). device "*" is the read cursor. */
void home_cursor_set(struct chat *c, struct strv user, struct strv dev, struct strv conv,
                     uint64_t seq);

/*
 * Put into out (conv -> seq) the cursors of (user, dev) that are queued or
 * being written: a login reads cursors from storage, which does not have them
 * yet. 0 or -ENOMEM.
 */
int home_cursors_pending(struct chat *c, struct strv user, struct strv dev, struct map *out);

/* Push an entry frame to a session: held while it catches up; never a seq twice. */
void home_push_entry(struct chat *c, struct session *s, struct strv conv, uint64_t seq,
                     struct rbuf *frame);

/* Send a frame to every session of u except the device `except` (may be empty). */
void home_push_user(struct chat *c, struct user *u, struct strv except, struct rbuf *frame);

#endif
