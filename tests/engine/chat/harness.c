/*
 * The fake runtime. One thread drives every shard in turn: poll storage
 * completions, drain the shard's inbox, run chat_flush; closes requested by
 * the chat layer are delivered as chat_on_close on the next turn, as the real
 * runtime does.
 */
#include "harness.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "storage/storage.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct chat_config h_cfg = {.heartbeat_ms = 30000,
                            .max_frame = 65536,
                            .max_body = 32768,
                            .catchup_limit = 200,
                            .write_pipeline = 1,
                            .dedup_window_ms = 86400000,
                            .recall_window_ms = 120000,
                            .max_devices = 10,
                            .max_group_size = 100000,
                            .outbound_limit = 4194304};
uint64_t h_now; /* set from the wall clock: storage ages dedup records by it */
int h_fail_writes;
int h_refuse_writes;
struct hadmin h_admin[H_ADMIN_MAX];
bool h_hold_writes;
bool h_hold_reads[H_SHARDS];
bool h_hold_xmsgs[H_SHARDS];

/* A read kept back by h_hold_reads, with copies of the bytes it points to. */
struct hread {
    struct stg_read q;
    uint64_t tag;
    char *key, *upper;
};

struct qmsg {
    struct qmsg *next;
    struct xmsg m;
};

struct shard_rt {
    unsigned idx;
    struct chat *chat;
    struct qmsg *head, *tail;
    struct stg_batch *held[64];
    uint64_t held_tags[64];
    int nheld;
    struct hread reads[64];
    int nreads;
};

static struct storage *st;
static struct shard_rt rts[H_SHARDS];
static struct hconn conns[H_CONNS];
static int pending_close[H_CONNS * 4];
static int npending_close;

static conn_id_t cid(int i)
{
    return ((conn_id_t)(i + 1) << 32) | 7u;
}

static int cidx(conn_id_t c)
{
    int i = (int)(c >> 32) - 1;
    return i >= 0 && i < H_CONNS && (uint32_t)c == 7u ? i : -1;
}

static int rt_send(void *rt, conn_id_t conn, struct rbuf *frame)
{
    int i = cidx(conn);
    if (i < 0 || !conns[i].open)
        return -ENOENT;
    struct hconn *c = &conns[i];
    CHECK(c->shard == ((struct shard_rt *)rt)->idx);
    CHECK(frame->len >= 5);
    uint32_t l = (uint32_t)frame->data[0] << 24 | (uint32_t)frame->data[1] << 16 |
                 (uint32_t)frame->data[2] << 8 | frame->data[3];
    CHECK(l + 4 == frame->len);
    CHECK(l <= h_cfg.max_frame);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->frames = realloc(c->frames, c->cap * sizeof(*c->frames));
        CHECK(c->frames);
    }
    struct hframe *f = &c->frames[c->n++];
    msgpack_zone_init(&f->zone, 256);
    size_t off = 0;
    /* the decoded object refers to its bytes: keep a copy */
    f->bytes = malloc(l);
    CHECK(f->bytes);
    memcpy(f->bytes, frame->data + 4, l);
    CHECK(msgpack_unpack(f->bytes, l, &off, &f->zone, &f->o) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == l && f->o.type == MSGPACK_OBJECT_MAP);
    return 0;
}

static void rt_close(void *rt, conn_id_t conn, const char *reason)
{
    int i = cidx(conn);
    if (i < 0 || !conns[i].open)
        return;
    conns[i].open = false;
    conns[i].closed_by_server = true;
    snprintf(conns[i].reason, sizeof(conns[i].reason), "%s", reason ? reason : "");
    pending_close[npending_close++] = i;
}

/* The runtime's frame hold: requests wait in h_request until ready. */
static void rt_hold(void *rt, conn_id_t conn)
{
    (void)rt;
    int i = cidx(conn);
    if (i < 0 || !conns[i].open)
        return;
    conns[i].held = true;
    conns[i].holds++;
}

static void rt_ready(void *rt, conn_id_t conn)
{
    (void)rt;
    int i = cidx(conn);
    if (i >= 0)
        conns[i].held = false;
}

/* Replay what a connection made while held, as the runtime's ready phase
 * does, until it is held again. */
static bool replay_pending(void)
{
    bool any = false;
    for (int i = 0; i < H_CONNS; i++) {
        struct hconn *h = &conns[i];
        uint32_t k = 0;
        while (k < h->npend && h->open && !h->held) {
            chat_on_request(rts[h->shard].chat, cid(i), &h->pend[k++]);
            any = true;
        }
        if (!h->open)
            k = h->npend;
        if (k) {
            memmove(h->pend, h->pend + k, (h->npend - k) * sizeof(*h->pend));
            h->npend -= k;
        }
    }
    return any;
}

int h_congest_every;
static int congest_calls;
static conn_id_t congested_conn[H_SHARDS];
static bool congested_pending[H_SHARDS];

/* Every h_congest_every-th question, a connection's queue is "past its
 * low-water mark"; h_drained tells the chat layer it has drained. */
static bool rt_congested(void *rt, conn_id_t conn)
{
    if (!h_congest_every || ++congest_calls % h_congest_every)
        return false;
    unsigned sh = ((struct shard_rt *)rt)->idx;
    congested_conn[sh] = conn;
    congested_pending[sh] = true;
    return true;
}

bool h_drained(void)
{
    bool any = false;
    for (unsigned i = 0; i < H_SHARDS; i++) {
        if (congested_pending[i]) {
            congested_pending[i] = false;
            chat_on_drained(rts[i].chat, congested_conn[i]);
            any = true;
        }
    }
    h_settle();
    return any;
}

static int rt_xsend(void *rt, unsigned dst, const struct xmsg *m)
{
    CHECK(dst < H_SHARDS);
    struct qmsg *q = malloc(sizeof(*q));
    CHECK(q);
    q->next = NULL;
    q->m = *m;
    q->m.src = (uint16_t)((struct shard_rt *)rt)->idx;
    struct shard_rt *d = &rts[dst];
    if (d->tail)
        d->tail->next = q;
    else
        d->head = q;
    d->tail = q;
    return 0;
}

/* Storage operations submitted and not yet completed: h_settle waits for
 * them, however slow the disk is (a fixed idle time made tests flaky under load). */
static long inflight;

static int rt_write(void *rt, struct stg_batch *b, uint64_t tag)
{
    struct shard_rt *s = rt;
    if (h_refuse_writes > 0) {
        h_refuse_writes--;
        return -RP_EFULL; /* the batch stays with the caller */
    }
    if (h_hold_writes) {
        CHECK(s->nheld < 64);
        s->held[s->nheld] = b;
        s->held_tags[s->nheld++] = tag;
        return 0;
    }
    if (h_fail_writes > 0) {
        /* storage fails it, in order, as it fails a write RocksDB refused */
        h_fail_writes--;
        stg_batch_inject_failure(b, STG_FAIL_BATCH);
    }
    int rc = storage_write(st, s->idx, b, tag);
    if (rc == 0)
        inflight++;
    return rc;
}

int h_fail_reads;
enum stg_cf h_fail_reads_cf;

int h_keep_done[H_SHARDS];
static uint64_t keep_tag[H_SHARDS]; /* the read whose completion is kept, 0: none */
static struct stg_done kept[H_SHARDS];
static bool has_kept[H_SHARDS];

bool h_kept(unsigned shard)
{
    return has_kept[shard];
}

static int rt_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    struct shard_rt *s = rt;
    if (h_keep_done[s->idx] > 0 && --h_keep_done[s->idx] == 0)
        keep_tag[s->idx] = tag;
    if (h_fail_reads > 0 && q->cf == h_fail_reads_cf) {
        h_fail_reads--;
        return -EIO;
    }
    if (h_hold_reads[s->idx]) {
        CHECK(s->nreads < 64);
        struct hread *h = &s->reads[s->nreads++];
        h->q = *q;
        h->tag = tag;
        h->key = malloc(q->klen + 1);
        h->upper = malloc(q->ulen + 1);
        CHECK(h->key && h->upper);
        memcpy(h->key, q->key, q->klen);
        if (q->ulen)
            memcpy(h->upper, q->upper, q->ulen);
        h->q.key = h->key;
        h->q.upper = q->ulen ? h->upper : NULL;
        return 0;
    }
    int rc = storage_read(st, ((struct shard_rt *)rt)->idx, q, tag);
    if (rc == 0)
        inflight++;
    return rc;
}

static void rt_admin_done(void *rt, uint64_t tag, const struct chat_admin_result *res)
{
    CHECK(tag > 0 && tag < H_ADMIN_MAX);
    struct hadmin *a = &h_admin[tag];
    int calls = a->calls;
    memset(a, 0, sizeof(*a));
    a->calls = calls + 1;
    a->shard = ((struct shard_rt *)rt)->idx;
    a->err = res->err;
    if (res->err)
        CHECK(res->msg && strlen(res->msg) > 0);
    snprintf(a->msg, sizeof(a->msg), "%s", res->msg ? res->msg : "");
    CHECK(res->conv.len < sizeof(a->conv));
    memcpy(a->conv, res->conv.p, res->conv.len);
    a->seq = res->seq;
    a->ts = res->ts;
    a->dup = res->dup;
    a->online = res->online;
    a->ndevices = res->ndevices;
    CHECK(res->ndevices <= CHAT_ADMIN_DEVICES_MAX);
    for (uint32_t i = 0; i < res->ndevices; i++) {
        CHECK(res->devices[i].len < sizeof(a->devices[i]));
        memcpy(a->devices[i], res->devices[i].p, res->devices[i].len);
    }
    a->kicked = res->kicked;
}

struct chat *h_chat(unsigned shard)
{
    return rts[shard].chat;
}

int h_held_writes(unsigned shard)
{
    return rts[shard].nheld;
}

void h_fail_held_write(unsigned shard, int k)
{
    CHECK(k < rts[shard].nheld);
    if (k < rts[shard].nheld)
        stg_batch_inject_failure(rts[shard].held[k], STG_FAIL_BATCH);
}

void h_release_writes(void)
{
    h_hold_writes = false;
    for (unsigned i = 0; i < H_SHARDS; i++) {
        for (int k = 0; k < rts[i].nheld; k++) {
            CHECK(storage_write(st, i, rts[i].held[k], rts[i].held_tags[k]) == 0);
            inflight++; /* h_settle waits for it, however slow the disk */
        }
        rts[i].nheld = 0;
    }
    h_settle();
}

void h_release_reads(void)
{
    for (unsigned i = 0; i < H_SHARDS; i++) {
        h_hold_reads[i] = false;
        for (int k = 0; k < rts[i].nreads; k++) {
            struct hread *h = &rts[i].reads[k];
            CHECK(storage_read(st, i, &h->q, h->tag) == 0);
            inflight++;
            free(h->key);
            free(h->upper);
        }
        rts[i].nreads = 0;
    }
    h_settle();
}

void h_release_kept(unsigned shard)
{
    CHECK(has_kept[shard]);
    has_kept[shard] = false;
    chat_on_storage(rts[shard].chat, &kept[shard]);
    h_settle();
}

static uint64_t rt_now(void *rt)
{
    return h_now;
}

void h_start(const char *dir, bool keep)
{
    if (!keep) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
    if (!h_now)
        h_now = clock_wall_ms();
    h_cfg.run_id++; /* every start is a new run */
    struct storage_config sc = {.path = dir, .durability = STG_WAL, .nshards = H_SHARDS};
    CHECK(storage_open(&sc, &st) == 0);
    inflight = 0;
    for (unsigned i = 0; i < H_SHARDS; i++) {
        rts[i].idx = i;
        struct chat_env env = {.rt = &rts[i],
                               .shard = i,
                               .nshards = H_SHARDS,
                               .cfg = &h_cfg,
                               .send = rt_send,
                               .close = rt_close,
                               .xsend = rt_xsend,
                               .congested = rt_congested,
                               .ready = rt_ready,
                               .hold = rt_hold,
                               .write = rt_write,
                               .read = rt_read,
                               .now_ms = rt_now,
                               .admin_done = rt_admin_done};
        rts[i].chat = chat_new(&env);
        CHECK(rts[i].chat);
    }
}

bool h_step(void)
{
    bool any = false;
    for (int k = 0; k < npending_close; k++) {
        int i = pending_close[k];
        chat_on_close(rts[conns[i].shard].chat, cid(i));
        any = true;
    }
    npending_close = 0;
    any |= replay_pending();
    for (unsigned i = 0; i < H_SHARDS; i++) {
        struct shard_rt *s = &rts[i];
        struct stg_done done[64];
        unsigned n;
        while ((n = storage_poll(st, i, done, 64)) > 0) {
            inflight -= n;
            for (unsigned k = 0; k < n; k++) {
                if (keep_tag[i] && done[k].tag == keep_tag[i]) {
                    CHECK(!has_kept[i]);
                    keep_tag[i] = 0;
                    kept[i] = done[k];
                    has_kept[i] = true;
                    continue;
                }
                chat_on_storage(s->chat, &done[k]);
            }
            any = true;
        }
        struct qmsg *q = h_hold_xmsgs[i] ? NULL : s->head;
        if (q)
            s->head = s->tail = NULL;
        while (q) {
            struct qmsg *next = q->next;
            chat_on_xmsg(s->chat, &q->m);
            free(q);
            q = next;
            any = true;
        }
        chat_flush(s->chat);
    }
    return any;
}

void h_settle(void)
{
    int idle = 0;
    while (idle < 30 || inflight > 0) {
        if (h_step())
            idle = 0;
        else {
            idle++;
            usleep(1000);
        }
    }
}

static void conns_free(void)
{
    for (int i = 0; i < H_CONNS; i++) {
        for (uint32_t k = 0; k < conns[i].n; k++) {
            msgpack_zone_destroy(&conns[i].frames[k].zone);
            free(conns[i].frames[k].bytes);
        }
        free(conns[i].frames);
        free(conns[i].pend);
        memset(&conns[i], 0, sizeof(conns[i]));
    }
}

void h_stop_abrupt(void)
{
    for (unsigned i = 0; i < H_SHARDS; i++) {
        struct qmsg *q = rts[i].head;
        while (q) {
            struct qmsg *next = q->next;
            chat_discard_xmsg(rts[i].chat, &q->m);
            free(q);
            q = next;
        }
        rts[i].head = rts[i].tail = NULL;
    }
    for (unsigned i = 0; i < H_SHARDS; i++) {
        chat_free(rts[i].chat);
        rts[i].chat = NULL;
    }
    storage_close(st); /* completions still queued are dropped with it */
    st = NULL;
    npending_close = 0;
    conns_free();
}

void h_release_xmsgs(void)
{
    for (unsigned i = 0; i < H_SHARDS; i++)
        h_hold_xmsgs[i] = false;
    h_settle();
}

void h_stop(void)
{
    for (unsigned i = 0; i < H_SHARDS; i++) {
        h_hold_xmsgs[i] = false;
        chat_stop(rts[i].chat); /* as the runtime does: what waits is written now */
    }
    h_settle();
    for (unsigned i = 0; i < H_SHARDS; i++) {
        chat_free(rts[i].chat);
        rts[i].chat = NULL;
    }
    storage_close(st);
    st = NULL;
    conns_free();
}

unsigned h_home(const char *user)
{
    return (unsigned)(hash_bytes(user, strlen(user)) % H_SHARDS);
}

unsigned h_owner(const char *conv)
{
    return (unsigned)(hash_bytes(conv, strlen(conv)) % H_SHARDS);
}

int h_hello_nosettle(const char *user, const char *dev, bool resume)
{
    int i = 0;
    while (i < H_CONNS && conns[i].used)
        i++;
    CHECK(i < H_CONNS);
    unsigned shard = (unsigned)(hash_bytes(user, strlen(user)) % H_SHARDS);
    conns[i] = (struct hconn){.used = true, .open = true, .shard = shard};
    chat_on_hello(rts[shard].chat, cid(i), strv_c(user), strv_c(dev), resume, 1);
    return i;
}

int h_hello(const char *user, const char *dev, bool resume)
{
    int i = h_hello_nosettle(user, dev, resume);
    h_settle();
    return i;
}

void h_close(int conn)
{
    if (!conns[conn].open)
        return;
    conns[conn].open = false;
    chat_on_close(rts[conns[conn].shard].chat, cid(conn));
    h_settle();
}

struct hconn *h_conn(int conn)
{
    return &conns[conn];
}

struct req h_req(int op, uint32_t id)
{
    return (struct req){.op = (enum op)op, .has_id = true, .id = id, .resume = true};
}

void h_request_nosettle(int conn, const struct req *r)
{
    struct hconn *h = &conns[conn];
    if (!h->held && !h->npend) {
        chat_on_request(rts[h->shard].chat, cid(conn), r);
        return;
    }
    if (h->npend == h->pcap) {
        h->pcap = h->pcap ? h->pcap * 2 : 16;
        h->pend = realloc(h->pend, h->pcap * sizeof(*h->pend));
        CHECK(h->pend);
    }
    h->pend[h->npend++] = *r;
}

void h_request(int conn, const struct req *r)
{
    h_request_nosettle(conn, r);
    h_settle();
}

void h_ack(int conn, const char *conv, uint64_t seq)
{
    struct req r = h_req(OP_ACK, 0);
    r.has_id = false;
    r.conv = strv_c(conv);
    r.seq = seq;
    h_request(conn, &r);
}

const msgpack_object *h_next(int conn)
{
    struct hconn *c = &conns[conn];
    return c->rd < c->n ? &c->frames[c->rd++].o : NULL;
}

const msgpack_object *h_get(const msgpack_object *m, const char *k)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(k);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            memcmp(kv->key.via.str.ptr, k, kl) == 0)
            return &kv->val;
    }
    return NULL;
}

bool h_is_str(const msgpack_object *m, const char *k, const char *v)
{
    const msgpack_object *o = h_get(m, k);
    return o && (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN) &&
           o->via.str.size == strlen(v) && memcmp(o->via.str.ptr, v, o->via.str.size) == 0;
}

uint64_t h_u(const msgpack_object *m, const char *k)
{
    const msgpack_object *o = h_get(m, k);
    CHECK(o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    return o->via.u64;
}

bool h_is_ok(const msgpack_object *m)
{
    return m && h_is_str(m, "op", "ok");
}

bool h_is_err(const msgpack_object *m, const char *code)
{
    return m && h_is_str(m, "op", "error") && h_is_str(m, "code", code);
}

const msgpack_object *h_next_op(int conn, const char *op)
{
    struct hconn *c = &conns[conn];
    for (uint32_t i = c->rd; i < c->n; i++) {
        if (h_is_str(&c->frames[i].o, "op", op)) {
            /* take it out of order: later frames stay unread */
            struct hframe t = c->frames[i];
            memmove(&c->frames[c->rd + 1], &c->frames[c->rd], (i - c->rd) * sizeof(t));
            c->frames[c->rd] = t;
            return &c->frames[c->rd++].o;
        }
    }
    return NULL;
}

const msgpack_object *h_reply(int conn, uint32_t id)
{
    struct hconn *c = &conns[conn];
    for (uint32_t i = c->rd; i < c->n; i++) {
        const msgpack_object *o = &c->frames[i].o;
        const msgpack_object *oid = h_get(o, "id");
        if ((h_is_str(o, "op", "ok") || h_is_str(o, "op", "error")) && oid &&
            oid->type == MSGPACK_OBJECT_POSITIVE_INTEGER && oid->via.u64 == id) {
            struct hframe t = c->frames[i];
            memmove(&c->frames[c->rd + 1], &c->frames[c->rd], (i - c->rd) * sizeof(t));
            c->frames[c->rd] = t;
            return &c->frames[c->rd++].o;
        }
    }
    return NULL;
}

void h_drain(int conn)
{
    conns[conn].rd = conns[conn].n;
}

int h_count_op(int conn, const char *op)
{
    int n = 0;
    for (uint32_t i = conns[conn].rd; i < conns[conn].n; i++)
        n += h_is_str(&conns[conn].frames[i].o, "op", op);
    return n;
}

static uint32_t next_id = 1000;

struct req h_send_req(const char *to, const char *group, const char *cmid, const char *type,
                      const char *body)
{
    struct req r = h_req(OP_SEND, 0);
    r.has_id = false;
    if (to)
        r.to = strv_c(to);
    if (group) {
        r.group = strv_c(group);
        r.has_group = true;
    }
    r.cmid = strv_c(cmid);
    r.type = strv_c(type);
    r.body = strv_c(body);
    return r;
}

static uint32_t send_one(int conn, const char *to, const char *gid, const char *cmid,
                         const char *body)
{
    struct req r = h_send_req(to, gid, cmid, "text", body);
    r.id = ++next_id;
    r.has_id = true;
    h_request(conn, &r);
    return r.id;
}

uint32_t h_send_to(int conn, const char *to, const char *cmid, const char *body)
{
    return send_one(conn, to, NULL, cmid, body);
}

uint32_t h_send_group(int conn, const char *gid, const char *cmid, const char *body)
{
    return send_one(conn, NULL, gid, cmid, body);
}

void h_put_raw(enum stg_cf cf, const void *k, size_t kl, const void *v, size_t vl)
{
    struct stg_batch *b = stg_batch_new();
    CHECK(b && stg_batch_put(b, cf, k, kl, v, vl) == 0);
    CHECK(storage_write_sync(st, b) == 0);
    stg_batch_free(b);
}

bool h_has_raw(enum stg_cf cf, const void *k, size_t kl)
{
    struct buf v;
    buf_init(&v);
    int rc = storage_get_sync(st, cf, k, kl, &v);
    CHECK(rc == 0 || rc == -ENOENT);
    buf_deinit(&v);
    return rc == 0;
}

int h_finish(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    printf("ok\n");
    return 0;
}
