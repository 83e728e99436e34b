/*
 * A fake runtime for the chat layer: several struct chat shards in one
 * thread, a real storage (storage_open on a temporary directory) whose
 * completions are polled, cross-shard messages through in-memory FIFOs, and
 * connections that record every frame sent to them (decoded with msgpack-c).
 * Writes can be made to fail (-RP_ESTORAGE) to test the gapless rule.
 */
#ifndef RP_TEST_CHAT_HARNESS_H
#define RP_TEST_CHAT_HARNESS_H

#include "engine/chat/chat.h"
#include "storage/storage.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

#define H_SHARDS 2
#define H_CONNS  256

struct hframe {
    msgpack_zone zone;
    msgpack_object o;
    char *bytes;
};

struct hconn {
    bool used, open, closed_by_server;
    bool held;      /* the chat layer holds its requests (chat_env.hold) until ready */
    uint32_t holds; /* how many times it was held */
    unsigned shard;
    char reason[16];
    struct hframe *frames;
    uint32_t n, cap, rd; /* rd: next frame to take */
    struct req *pend;    /* requests made while held, replayed in order once ready */
    uint32_t npend, pcap;
};

extern struct chat_config h_cfg;
extern uint64_t h_now;
extern int h_fail_writes;   /* > 0: the next N write submits complete with -RP_ESTORAGE */
extern int h_refuse_writes; /* > 0: the next N write submits are refused (-RP_EFULL) */
extern bool h_hold_writes;  /* true: write submits wait (not durable) until h_release_writes */
void h_release_writes(void);
/* Write submits of shard now held; mark the k-th of them to fail when released. */
int h_held_writes(unsigned shard);
void h_fail_held_write(unsigned shard, int k);
/* true: reads submitted by that shard wait (not started) until h_release_reads */
extern bool h_hold_reads[H_SHARDS];
void h_release_reads(void);
/* n > 0: of the reads that shard submits from now, the n-th runs but its
 * completion is kept back until h_release_kept (one at a time) */
extern int h_keep_done[H_SHARDS];
bool h_kept(unsigned shard);
void h_release_kept(unsigned shard);
/* true: cross-shard messages to that shard wait until h_release_xmsgs */
extern bool h_hold_xmsgs[H_SHARDS];
void h_release_xmsgs(void);

/* The next h_fail_reads reads of family h_fail_reads_cf fail (-EIO). */
extern int h_fail_reads;
extern enum stg_cf h_fail_reads_cf;

/* > 0: every h_congest_every-th check of a connection's queue finds it past
 * its low-water mark (a catch-up pauses); h_drained then reports the queues
 * drained and settles: true if any was. */
extern int h_congest_every;
bool h_drained(void);

/* Write or look up one record of storage directly. */
void h_put_raw(enum stg_cf cf, const void *k, size_t kl, const void *v, size_t vl);
bool h_has_raw(enum stg_cf cf, const void *k, size_t kl);

/* Start shards with storage in dir (created fresh unless keep). */
void h_start(const char *dir, bool keep);
void h_stop(void);
/* The end of a test program, once stopped: remove dir, print "ok"; main's exit code. */
int h_finish(const char *dir);

/* Run every shard's loop until nothing happens for a while. */
void h_settle(void);
/* One turn of every shard's loop; true if anything happened. */
bool h_step(void);
/* Stop as the runtime may: free the shards with reads and writes still in
 * flight (their completions never arrive), then close storage. */
void h_stop_abrupt(void);

/* hello as (user, dev) on the user's home; returns the connection index. */
int h_hello(const char *user, const char *dev, bool resume);
/* The same without settling: the chat layer has only seen the hello. */
int h_hello_nosettle(const char *user, const char *dev, bool resume);
/* The home shard of a user, the owner shard of a conversation id. */
unsigned h_home(const char *user);
unsigned h_owner(const char *conv);
void h_close(int conn);
struct hconn *h_conn(int conn);

/* Requests (views into static storage are fine: the chat copies; a request
 * made while its connection is held is kept as it is and replayed later, so
 * its views must outlive the replay). */
struct req h_req(int op, uint32_t id);
void h_request(int conn, const struct req *r);
/* The same without settling afterwards. */
void h_request_nosettle(int conn, const struct req *r);
/* An ack (no id, no reply) of seq in conv, settled. */
void h_ack(int conn, const char *conv, uint64_t seq);

/* The next frame on conn (NULL if none); frames with op in skip_ops are passed over when skip. */
const msgpack_object *h_next(int conn);
/* The next frame with op == op, skipping others; NULL if none. */
const msgpack_object *h_next_op(int conn, const char *op);
/* The reply (ok or error) with this id, skipping pushes. */
const msgpack_object *h_reply(int conn, uint32_t id);
/* Drop every unread frame of conn. */
void h_drain(int conn);
/* How many unread frames with op. */
int h_count_op(int conn, const char *op);

const msgpack_object *h_get(const msgpack_object *m, const char *k);
bool h_is_str(const msgpack_object *m, const char *k, const char *v);
uint64_t h_u(const msgpack_object *m, const char *k);
bool h_is_ok(const msgpack_object *m);
bool h_is_err(const msgpack_object *m, const char *code);

/* The answers of admin calls, by tag (tags 1..H_ADMIN_MAX-1). */
#define H_ADMIN_MAX 64
struct hadmin {
    int calls; /* how many times admin_done ran for the tag */
    unsigned shard;
    int err;
    char msg[64];
    char conv[160];
    uint64_t seq, ts;
    bool dup, online;
    uint32_t ndevices;
    char devices[CHAT_ADMIN_DEVICES_MAX][40];
    uint32_t kicked;
};
extern struct hadmin h_admin[H_ADMIN_MAX];

/* The chat of one shard (for the admin entry points). */
struct chat *h_chat(unsigned shard);

/* A send request (not sent) to user `to` or group `group` (the other NULL), without id. */
struct req h_send_req(const char *to, const char *group, const char *cmid, const char *type,
                      const char *body);

/* A direct send, a group send, both returning the id used. */
uint32_t h_send_to(int conn, const char *to, const char *cmid, const char *body);
uint32_t h_send_group(int conn, const char *gid, const char *cmid, const char *body);

#endif
