/*
 * A fake runtime for fuzzing the chat layer: two struct chat shards driven
 * from one thread, a real storage on a temporary directory that outlives the
 * shards (opened once per process), cross-shard messages through in-memory
 * FIFOs, and connections whose frames are decoded and checked as they are
 * sent. Storage requests are held and run one at a time when the script says,
 * in the interleaving it picks, so settling takes exactly as long as storage
 * needs and what a read sees does not depend on thread timing.
 *
 * Checked on every frame (a failure aborts): the frame is one length-prefixed
 * msgpack map within max_frame sent on the connection's shard; within one
 * session the `msg` pushes of a conversation have strictly increasing seqs;
 * `history` answers ascend by seq; no reply has an id the session never asked
 * for. What later checks need is recorded: every `msg` push (user, conv, seq)
 * and every `send` answer (conv, seq).
 *
 * Thread: one thread only; the state is global.
 */
#ifndef RP_FUZZ_CHAT_RT_H
#define RP_FUZZ_CHAT_RT_H

#include "engine/chat/chat.h"

#include <stdbool.h>
#include <stdint.h>

#define RT_SHARDS 2
#define RT_CONNS  16
#define RT_IDMAX  72 /* ids with their run prefix, plus room for "d:" and ':' */

/* A conversation id and a seq seen by the runtime. */
struct rt_seq {
    char conv[2 * RT_IDMAX];
    char user[RT_IDMAX]; /* pushes: the receiving user; acks: the sender */
    uint64_t seq;
};

struct rt_conn {
    bool used, open, ready, closed_by_server;
    unsigned shard;
    char user[RT_IDMAX];
    uint32_t asked[64]; /* request ids sent on this session, answered ones cleared */
    uint32_t nasked;
    struct rt_seq last[32]; /* per conversation, the last msg seq pushed */
    uint32_t nlast;
};

extern struct chat_config rt_cfg;
extern uint64_t rt_now;
extern int rt_fail_writes; /* > 0: the next N write submits complete with -RP_ESTORAGE */

/* What this run recorded (reset by rt_begin). */
extern struct rt_seq *rt_pushes, *rt_acks;
extern uint32_t rt_npushes, rt_nacks;

/* Opens storage in a fresh temporary directory (once per process; removed at exit). */
void rt_init(void);
struct storage *rt_storage(void);

/* New shards over the same storage / free them (every connection closed, everything settled). */
void rt_begin(void);
void rt_end(void);

/*
 * One turn of every shard's loop; true if anything happened. pattern >= 0:
 * first run the held storage requests of every shard one at a time and
 * deliver the completions in that order, the reads and writes of the shards
 * interleaved as pattern says (two bits per pick, see chat_rt.c); -1: the
 * requests wait and cross-shard messages overtake them.
 */
bool rt_step(int pattern);
/* chat_on_tick on every shard, then one turn. */
void rt_tick(void);
/* Turn, running storage interleaved by pattern (0..255), until nothing is
 * held and a turn does nothing. rt_settle: writes first. */
void rt_settle_order(unsigned pattern);
void rt_settle(void);

/* hello as (user, device) on the user's home; the slot, or -1 if all are taken. */
int rt_hello(const char *user, const char *device, bool resume);
/* The client closes conn (ignored if it is not open). */
void rt_close(int conn);
struct rt_conn *rt_conn(int conn);
/* Hands a request to conn's shard (it must be open and ready). */
void rt_request(int conn, const struct req *r);

#endif
