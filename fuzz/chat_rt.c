/*
 * The fuzzing runtime. Closes the chat layer asks for are delivered as
 * chat_on_close on the next turn, as the real runtime does; a connection's
 * requests reach the chat layer only once env->ready was called for it, and
 * not while env->hold keeps them (a session at its bound of queries).
 * Storage completions are held until a turn that delivers storage, which first
 * waits for every submit in flight: when a completion arrives relative to
 * cross-shard messages is then chosen by the script, not by thread timing, so
 * a failing input replays the same way.
 */
#include "chat_rt.h"

#include "base/err.h"
#include "base/hash.h"
#include "storage/storage.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct chat_config rt_cfg = {.heartbeat_ms = 30000,
                             .max_frame = 65536,
                             .max_body = 32768,
                             .catchup_limit = 200,
                             .write_pipeline = 4,
                             .dedup_window_ms = 86400000,
                             .recall_window_ms = 120000,
                             .max_devices = 3,
                             .max_group_size = 100000,
                             .outbound_limit = 4194304};
uint64_t rt_now;
int rt_fail_writes;
struct rt_seq *rt_pushes, *rt_acks;
uint32_t rt_npushes, rt_nacks;
static uint32_t cap_pushes, cap_acks;

struct qmsg {
    struct qmsg *next;
    struct xmsg m;
};

/* A storage request the chat layer made, held until a turn runs storage. */
struct submit {
    uint64_t tag;
    bool read, done;
    struct stg_batch *b; /* a write */
    struct stg_read q;   /* a read, its key and bound copied into keys */
    uint8_t *keys;
};

struct shard_rt {
    unsigned idx;
    struct chat *chat;
    struct qmsg *head, *tail;
    struct stg_done *done; /* completions of the requests run, in run order */
    unsigned ndone, cap;
    struct submit *order; /* the requests not run yet, oldest first */
    unsigned norder, ocap;
};

static struct storage *st;
static char dir[64];
static struct shard_rt rts[RT_SHARDS];
static struct rt_conn conns[RT_CONNS];
static int closing[RT_CONNS * 4];
static int nclosing;
static int queued; /* storage requests not run yet, over all shards */

static conn_id_t cid(int i)
{
    return ((conn_id_t)(i + 1) << 32) | 5u;
}

static int cidx(conn_id_t c)
{
    int i = (int)(c >> 32) - 1;
    return i >= 0 && i < RT_CONNS && (uint32_t)c == 5u ? i : -1;
}

static void record(struct rt_seq **v, uint32_t *n, uint32_t *cap, const msgpack_object *conv,
                   const char *user, uint64_t seq)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = realloc(*v, *cap * sizeof(**v));
        if (!*v)
            abort();
    }
    struct rt_seq *s = &(*v)[(*n)++];
    if (conv->via.str.size >= sizeof(s->conv))
        abort();
    memcpy(s->conv, conv->via.str.ptr, conv->via.str.size);
    s->conv[conv->via.str.size] = 0;
    snprintf(s->user, sizeof(s->user), "%s", user);
    s->seq = seq;
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    size_t kl = strlen(k);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            memcmp(kv->key.via.str.ptr, k, kl) == 0)
            return &kv->val;
    }
    return NULL;
}

static bool is_str(const msgpack_object *o, const char *v)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(v) &&
           memcmp(o->via.str.ptr, v, o->via.str.size) == 0;
}

static uint64_t uint_of(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        abort();
    return o->via.u64;
}

/* A msg push: seqs of one conversation strictly increase within the session. */
static void on_push(struct rt_conn *c, const msgpack_object *m)
{
    const msgpack_object *conv = get(m, "conv");
    uint64_t seq = uint_of(get(m, "seq"));
    if (!conv || conv->type != MSGPACK_OBJECT_STR || seq == 0)
        abort();
    struct rt_seq *last = NULL;
    for (uint32_t i = 0; i < c->nlast && !last; i++)
        if (strlen(c->last[i].conv) == conv->via.str.size &&
            memcmp(c->last[i].conv, conv->via.str.ptr, conv->via.str.size) == 0)
            last = &c->last[i];
    if (last && seq <= last->seq)
        abort(); /* pushed twice or backwards in one session */
    if (!last && c->nlast < sizeof(c->last) / sizeof(c->last[0])) {
        last = &c->last[c->nlast++];
        memcpy(last->conv, conv->via.str.ptr, conv->via.str.size);
        last->conv[conv->via.str.size] = 0;
    }
    if (last)
        last->seq = seq;
    record(&rt_pushes, &rt_npushes, &cap_pushes, conv, c->user, seq);
}

/* A reply: it answers a request of this session, and a send's carries its seq. */
static void on_reply(struct rt_conn *c, const msgpack_object *m, bool ok)
{
    const msgpack_object *id = get(m, "id");
    if (!id)
        return; /* an error about a frame whose id was unknown */
    uint32_t v = (uint32_t)uint_of(id);
    if (v == UINT32_MAX)
        return; /* the hello's */
    uint32_t i = 0;
    while (i < c->nasked && c->asked[i] != v)
        i++;
    if (i == c->nasked)
        abort(); /* a reply nobody asked for, or a second reply */
    c->asked[i] = c->asked[--c->nasked];
    const msgpack_object *conv = get(m, "conv"), *seq = get(m, "seq");
    if (ok && conv && seq && !get(m, "msgs"))
        record(&rt_acks, &rt_nacks, &cap_acks, conv, c->user, uint_of(seq));
    const msgpack_object *msgs = get(m, "msgs");
    if (ok && msgs) {
        if (msgs->type != MSGPACK_OBJECT_ARRAY)
            abort();
        uint64_t prev = 0;
        for (uint32_t k = 0; k < msgs->via.array.size; k++) {
            uint64_t s = uint_of(get(&msgs->via.array.ptr[k], "seq"));
            if (s <= prev)
                abort(); /* history ascends by seq */
            prev = s;
        }
    }
}

static int env_send(void *rt, conn_id_t conn, struct rbuf *frame)
{
    int i = cidx(conn);
    if (i < 0 || !conns[i].open)
        return -ENOENT;
    struct rt_conn *c = &conns[i];
    if (c->shard != ((struct shard_rt *)rt)->idx || frame->len < 5)
        abort();
    uint32_t l = (uint32_t)frame->data[0] << 24 | (uint32_t)frame->data[1] << 16 |
                 (uint32_t)frame->data[2] << 8 | frame->data[3];
    if (l + 4 != frame->len || l > rt_cfg.max_frame)
        abort();
    msgpack_zone zone;
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_init(&zone, 1024);
    if (msgpack_unpack((const char *)frame->data + 4, l, &off, &zone, &o) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != l || o.type != MSGPACK_OBJECT_MAP)
        abort();
    const msgpack_object *op = get(&o, "op");
    if (is_str(op, "msg"))
        on_push(c, &o);
    else if (is_str(op, "ok") || is_str(op, "error"))
        on_reply(c, &o, is_str(op, "ok"));
    msgpack_zone_destroy(&zone);
    return 0;
}

static void env_ready(void *rt, conn_id_t conn)
{
    int i = cidx(conn);
    if (i >= 0 && conns[i].open)
        conns[i].ready = true;
}

/* A session at its bound of queries in flight: its requests wait, as the
 * script's do before the session is ready, until env_ready again. */
static void env_hold(void *rt, conn_id_t conn)
{
    int i = cidx(conn);
    if (i >= 0 && conns[i].open)
        conns[i].ready = false;
}

static void env_close(void *rt, conn_id_t conn, const char *reason)
{
    int i = cidx(conn);
    if (i < 0 || !conns[i].open)
        return;
    conns[i].open = false;
    conns[i].closed_by_server = true;
    closing[nclosing++] = i;
}

static int env_xsend(void *rt, unsigned dst, const struct xmsg *m)
{
    if (dst >= RT_SHARDS)
        abort();
    struct qmsg *q = malloc(sizeof(*q));
    if (!q)
        abort();
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

/* Holds a request; it runs when a turn runs storage, in the script's order. */
static struct submit *hold(struct shard_rt *s, uint64_t tag, bool read)
{
    if (s->norder == s->ocap) {
        s->ocap = s->ocap * 2 + 64;
        s->order = realloc(s->order, s->ocap * sizeof(*s->order));
        if (!s->order)
            abort();
    }
    struct submit *o = &s->order[s->norder++];
    *o = (struct submit){.tag = tag, .read = read};
    queued++;
    return o;
}

static int env_write(void *rt, struct stg_batch *b, uint64_t tag)
{
    struct shard_rt *s = rt;
    if (!b)
        return -EINVAL;
    if (rt_fail_writes > 0) {
        /* storage fails it, in order, as it fails a write RocksDB refused */
        rt_fail_writes--;
        stg_batch_inject_failure(b, STG_FAIL_BATCH);
    }
    hold(s, tag, false)->b = b;
    return 0;
}

static int env_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    /* storage_read's own checks, made now as it would make them at the call */
    if (q->cf >= STG_CF__COUNT || !q->klen)
        return -EINVAL;
    if (q->kind == STG_SCAN) {
        size_t n = q->klen < q->ulen ? q->klen : q->ulen;
        int c = q->ulen ? memcmp(q->key, q->upper, n) : 0;
        if (!q->ulen || c > 0 || (c == 0 && q->klen >= q->ulen))
            return -EINVAL;
    }
    uint8_t *keys = malloc(q->klen + q->ulen);
    if (!keys)
        return -ENOMEM;
    memcpy(keys, q->key, q->klen);
    if (q->ulen)
        memcpy(keys + q->klen, q->upper, q->ulen);
    struct submit *o = hold(rt, tag, true);
    o->q = *q;
    o->q.key = keys;
    o->q.upper = q->ulen ? keys + q->klen : NULL;
    o->keys = keys;
    return 0;
}

static uint64_t env_now(void *rt)
{
    return rt_now;
}

static void env_admin_done(void *rt, uint64_t tag, const struct chat_admin_result *res)
{
    abort(); /* no admin call is made */
}

static void cleanup(void)
{
    if (st)
        storage_close(st);
    st = NULL;
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        free(rts[i].done);
        free(rts[i].order);
        rts[i].done = NULL;
        rts[i].order = NULL;
    }
    free(rt_pushes);
    free(rt_acks);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

void rt_init(void)
{
    if (st)
        return;
    snprintf(dir, sizeof(dir), "/tmp/rp-fuzz-chat-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    struct storage_config sc = {.path = dir, .durability = STG_WAL, .nshards = RT_SHARDS};
    if (storage_open(&sc, &st))
        abort();
    atexit(cleanup);
}

struct storage *rt_storage(void)
{
    return st;
}

void rt_begin(void)
{
    rt_npushes = rt_nacks = 0;
    rt_fail_writes = 0;
    rt_cfg.run_id++; /* every begin is a new run */
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        rts[i].idx = i;
        struct chat_env env = {.rt = &rts[i],
                               .shard = i,
                               .nshards = RT_SHARDS,
                               .cfg = &rt_cfg,
                               .send = env_send,
                               .ready = env_ready,
                               .hold = env_hold,
                               .close = env_close,
                               .xsend = env_xsend,
                               .write = env_write,
                               .read = env_read,
                               .now_ms = env_now,
                               .admin_done = env_admin_done};
        rts[i].chat = chat_new(&env);
        if (!rts[i].chat)
            abort();
    }
}

/* Runs one request on the real storage and waits for its completion. */
static struct stg_done run(struct shard_rt *s, struct submit *o)
{
    int r =
        o->read ? storage_read(st, s->idx, &o->q, o->tag) : storage_write(st, s->idx, o->b, o->tag);
    if (r)
        abort(); /* checked when held; the queues are empty */
    free(o->keys);
    struct stg_done d;
    /* a storage thread answers within microseconds; ten seconds is a hang */
    for (long spins = 0; storage_poll(st, s->idx, &d, 1) == 0; spins++) {
        if (spins == 1000000)
            abort();
        usleep(10);
    }
    if (d.tag != o->tag)
        abort();
    return d;
}

/*
 * Runs every shard's held requests one at a time, holding the completions for
 * delivery in run order. Each shard has a reader and a writer thread that run
 * its reads and its writes in submit order, but all of them interleave as
 * they run, and a read sees a write only if it ran after it; the script picks
 * the interleaving instead: at pick t the two bits of pattern at 2 * (t % 4)
 * choose among the next write and next read of each shard that has one. An
 * input thus replays the same way. Requests made while delivering wait for
 * the next turn that runs storage.
 */
static void run_storage(unsigned pattern)
{
    unsigned total = 0, next[RT_SHARDS * 2] = {0};
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        struct shard_rt *s = &rts[i];
        if (s->cap < s->norder) {
            s->cap = s->norder + 64;
            s->done = realloc(s->done, s->cap * sizeof(*s->done));
            if (!s->done)
                abort();
        }
        s->ndone = 0;
        total += s->norder;
    }
    for (unsigned t = 0; t < total; t++) {
        unsigned cand[RT_SHARDS * 2], nc = 0;
        for (unsigned c = 0; c < RT_SHARDS * 2; c++) {
            struct shard_rt *s = &rts[c / 2];
            bool read = c & 1;
            while (next[c] < s->norder &&
                   (s->order[next[c]].done || s->order[next[c]].read != read))
                next[c]++;
            if (next[c] < s->norder)
                cand[nc++] = c;
        }
        unsigned c = cand[(pattern >> (2 * (t % 4)) & 3) % nc];
        struct shard_rt *s = &rts[c / 2];
        struct submit *o = &s->order[next[c]];
        o->done = true;
        s->done[s->ndone++] = run(s, o);
    }
    for (unsigned i = 0; i < RT_SHARDS; i++)
        rts[i].norder = 0;
    queued -= (int)total;
}

static bool turn(int pattern)
{
    bool any = false;
    for (int k = 0; k < nclosing; k++) {
        int i = closing[k];
        chat_on_close(rts[conns[i].shard].chat, cid(i));
        any = true;
    }
    nclosing = 0;
    if (pattern >= 0)
        run_storage((unsigned)pattern);
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        struct shard_rt *s = &rts[i];
        /* delivered in run order; requests made meanwhile are held anew */
        unsigned n = pattern >= 0 ? s->ndone : 0;
        for (unsigned k = 0; k < n; k++)
            chat_on_storage(s->chat, &s->done[k]);
        any = any || n;
        struct qmsg *q = s->head;
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

bool rt_step(int pattern)
{
    return turn(pattern);
}

void rt_tick(void)
{
    for (unsigned i = 0; i < RT_SHARDS; i++)
        chat_on_tick(rts[i].chat);
    turn(-1);
}

void rt_settle_order(unsigned pattern)
{
    for (int turns = 0; turn((int)(pattern & 0xff)) || queued > 0 || nclosing > 0; turns++)
        if (turns == 100000)
            abort(); /* the shards keep each other busy */
}

void rt_settle(void)
{
    rt_settle_order(0);
}

void rt_end(void)
{
    rt_settle();
    /* a peer's friend side whose write failed is written again at a tick, and
     * the pair's waiting ops are answered after it: give them the ticks */
    for (int t = 0; t < 3; t++) {
        rt_tick();
        rt_settle();
    }
    for (int i = 0; i < RT_CONNS; i++)
        if (conns[i].open && conns[i].nasked)
            abort(); /* settled, yet a request of a live session has no answer */
    for (int i = 0; i < RT_CONNS; i++)
        rt_close(i);
    rt_settle();
    for (unsigned i = 0; i < RT_SHARDS; i++) {
        if (rts[i].head)
            abort(); /* settled: every ring is empty */
        chat_free(rts[i].chat);
        rts[i].chat = NULL;
    }
    memset(conns, 0, sizeof(conns));
}

int rt_hello(const char *user, const char *device, bool resume)
{
    int i = 0;
    while (i < RT_CONNS && conns[i].used)
        i++;
    if (i == RT_CONNS)
        return -1;
    unsigned shard = (unsigned)(hash_bytes(user, strlen(user)) % RT_SHARDS);
    conns[i] = (struct rt_conn){.used = true, .open = true, .shard = shard};
    snprintf(conns[i].user, sizeof(conns[i].user), "%s", user);
    chat_on_hello(rts[shard].chat, cid(i), strv_c(user), strv_c(device), resume, UINT32_MAX);
    return i;
}

void rt_close(int conn)
{
    struct rt_conn *c = &conns[conn];
    if (!c->open)
        return;
    c->open = false;
    chat_on_close(rts[c->shard].chat, cid(conn));
}

struct rt_conn *rt_conn(int conn)
{
    return &conns[conn];
}

void rt_request(int conn, const struct req *r)
{
    struct rt_conn *c = &conns[conn];
    if (!c->open || !c->ready)
        abort();
    if (r->has_id && r->op != OP_ACK) {
        if (c->nasked == sizeof(c->asked) / sizeof(c->asked[0]))
            return; /* too many unanswered: the script waits */
        c->asked[c->nasked++] = r->id;
    }
    chat_on_request(rts[c->shard].chat, cid(conn), r);
}
