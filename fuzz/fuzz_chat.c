/*
 * Stateful fuzz target for the chat layer: two shards over a real storage
 * (chat_rt.h), driven by the input read as a script of steps. Each step is one
 * byte, step % 8 picking what it does, followed by its arguments:
 *
 *   0 open     [user][device]  hello as user (4 per run) and device (3), resume by bit 7
 *   1 close    [conn]          the client closes a connection
 *   2 request  [conn][op][a][b][c]  one request from a small menu of ops and ids
 *   3 frame    [conn][len][bytes]   a request frame of fuzz bytes, through req_decode
 *   4 tick     [secs]          the clock moves on; chat_on_tick on every shard
 *   5 step     [p]  one turn of every shard's loop; with bit 7 (and argument p),
 *                   storage completes first, else completions wait and
 *                   cross-shard messages overtake them
 *   6 settle   [p]  everything in flight completes
 *              (p: how the shards' reads and writes interleave, see rt_step;
 *              the storage threads may run them in any such order)
 *   7 fail     [n]             the next n % 3 + 1 write submits fail
 *
 * Ids in requests are prefixed with a hash of the input, so every input has
 * its own users, groups and conversations on the shared storage (an input run
 * again in the same process finds its earlier state, which the checks allow:
 * they read every log from seq 1). After the script, everything settles and the
 * runtime's per-frame checks (chat_rt.h) have held; then, from storage:
 * - every conversation is gapless up to every seq a `send` was answered
 *   with: each entry 1..seq is there and decodes with its conv and seq;
 * - no `msg` push went to a user who was not a member at that seq (a
 *   direct conversation's two users; a group's members, replayed from the
 *   group's event entries, the event that adds or removes a user included);
 * and the shards free everything (LeakSanitizer).
 */
#include "chat_rt.h"

#include "base/buf.h"
#include "base/hash.h"
#include "protocol/enc.h"
#include "protocol/req.h"
#include "storage/key.h"
#include "storage/storage.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STEPS 48
#define MAX_SEQ   400 /* a conversation a run can fill is far shorter */

static char prefix[16];
static char users[4][RT_IDMAX];
static const char *const devices[] = {"phone", "laptop", "web"};
static uint32_t next_id;

struct cursor {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct cursor *c)
{
    if (!c->n)
        return 0;
    c->n--;
    return *c->p++;
}

/* ---- requests ---- */

/* Storage for the ids of one request (rewritten with the run prefix). */
struct idbuf {
    char s[24][2 * RT_IDMAX];
    struct strv list[16];
    int n;
};

static struct strv id_of(struct idbuf *b, const char *fmt, const char *a, const char *c)
{
    if (b->n == 24)
        abort();
    char *s = b->s[b->n++];
    char tmp[sizeof(b->s[0])]; /* a or c may be an earlier id of b */
    int len = snprintf(tmp, sizeof(tmp), fmt, a, c);
    memcpy(s, tmp, sizeof(tmp));
    return (struct strv){s, (size_t)len};
}

static struct strv user_id(struct idbuf *b, unsigned i)
{
    return id_of(b, "%s%s", users[i % 4], "");
}

static struct strv group_id(struct idbuf *b, unsigned i)
{
    char g[8];
    snprintf(g, sizeof(g), "g%u", i % 3);
    return id_of(b, "%s%s", prefix, g);
}

static struct strv dm_conv(struct idbuf *b, unsigned x, unsigned y)
{
    const char *u = users[x % 4], *v = users[y % 4];
    return strcmp(u, v) <= 0 ? id_of(b, "d:%s:%s", u, v) : id_of(b, "d:%s:%s", v, u);
}

/* One request of the menu: op and ids chosen by a, b, c. */
static void menu(struct req *r, struct idbuf *ib, int from, uint8_t op, uint8_t a, uint8_t b,
                 uint8_t c)
{
    static const int ops[] = {OP_SEND,          OP_SEND,           OP_ACK,          OP_READ,
                              OP_RECALL,        OP_SYNC,           OP_HISTORY,      OP_GROUP_CREATE,
                              OP_GROUP_INVITE,  OP_GROUP_JOIN,     OP_GROUP_KICK,   OP_GROUP_LEAVE,
                              OP_GROUP_DISMISS, OP_GROUP_UPDATE,   OP_GROUP_ADMIN,  OP_GROUP_INFO,
                              OP_GROUP_MEMBERS, OP_FRIEND_REQUEST, OP_FRIEND_ACCEPT};
    *r = (struct req){.op = (enum op)ops[op % (sizeof(ops) / sizeof(ops[0]))],
                      .has_id = true,
                      .id = ++next_id,
                      .resume = true};
    bool group = b & 1;
    struct strv conv =
        group ? id_of(ib, "g:%s%s", group_id(ib, a).p, "") : dm_conv(ib, (unsigned)from, a);
    ib->list[0] = user_id(ib, b);
    ib->list[1] = user_id(ib, c);
    switch (r->op) {
    case OP_SEND: {
        char cmid[8];
        snprintf(cmid, sizeof(cmid), "c%u", c % 6);
        if (group) {
            r->group = group_id(ib, a);
            r->has_group = true;
        } else {
            r->to = user_id(ib, a);
        }
        r->cmid = id_of(ib, "%s%s", cmid, "");
        r->type = strv_c(c & 8 ? "image" : "text");
        r->body = strv_c("hello");
        break;
    }
    case OP_ACK:
    case OP_READ:
    case OP_RECALL:
        r->has_id = r->op != OP_ACK;
        r->conv = conv;
        r->seq = c % 8;
        break;
    case OP_HISTORY:
        r->conv = conv;
        r->has_limit = c & 1;
        r->limit = c % 5 + 1;
        r->has_after = c & 2;
        r->after = c % 4;
        break;
    case OP_GROUP_CREATE:
        r->name = strv_c("team");
        r->has_name = true;
        r->group = group_id(ib, a);
        r->has_group = !(c & 4);
        r->users = ib->list;
        r->nusers = c % 3;
        r->has_members = r->nusers > 0;
        break;
    case OP_GROUP_INVITE:
    case OP_GROUP_KICK:
        r->group = group_id(ib, a);
        r->has_group = true;
        r->users = ib->list;
        r->nusers = 1 + c % 2;
        break;
    case OP_GROUP_UPDATE:
        r->group = group_id(ib, a);
        r->has_group = true;
        r->open = c & 1;
        r->has_open = true;
        break;
    case OP_GROUP_ADMIN:
        r->group = group_id(ib, a);
        r->has_group = true;
        r->user = user_id(ib, b);
        r->admin = c & 1;
        r->has_admin = true;
        break;
    case OP_FRIEND_REQUEST:
    case OP_FRIEND_ACCEPT:
        r->user = user_id(ib, a);
        break;
    case OP_SYNC:
        break;
    default: /* join, leave, dismiss, info, members */
        r->group = group_id(ib, a);
        r->has_group = true;
    }
}

/* Prefixes an id decoded from fuzz bytes; false when it would grow too long. */
static bool rewrite(struct idbuf *ib, struct strv *v)
{
    if (!v->len)
        return true;
    if (v->len + strlen(prefix) > 64 || ib->n == 24)
        return false;
    char *s = ib->s[ib->n++];
    int n = snprintf(s, sizeof(ib->s[0]), "%s%.*s", prefix, (int)v->len, v->p);
    *v = (struct strv){s, (size_t)n};
    return true;
}

/* d:a:b and g:x keep their shape with prefixed ids (a common prefix keeps a <= b). */
static bool rewrite_conv(struct idbuf *ib, struct strv *v)
{
    if (v->len > 2 && v->p[0] == 'g' && v->p[1] == ':') {
        struct strv g = {v->p + 2, v->len - 2};
        if (!rewrite(ib, &g))
            return false;
        *v = id_of(ib, "g:%s%s", g.p, "");
        return true;
    }
    const char *colon = v->len > 2 ? memchr(v->p + 2, ':', v->len - 2) : NULL;
    if (!colon || v->p[0] != 'd' || v->p[1] != ':')
        return true; /* not a conversation id: the chat layer says so */
    struct strv a = {v->p + 2, (size_t)(colon - v->p - 2)};
    struct strv b = {colon + 1, v->len - (size_t)(colon + 1 - v->p)};
    if (!rewrite(ib, &a) || !rewrite(ib, &b))
        return false;
    *v = id_of(ib, "d:%s:%s", a.p, b.p);
    return true;
}

static bool from_bytes(struct req *r, struct idbuf *ib, struct req_decoder *d, const uint8_t *p,
                       uint32_t n)
{
    struct req_limits lim = {.max_body = rt_cfg.max_body, .max_users = 500};
    if (req_decode(d, &lim, p, n, r, NULL) != 0 || r->op == OP_HELLO || r->op == OP_PING)
        return false;
    if (r->nusers > 16)
        return false;
    for (uint32_t i = 0; i < r->nusers; i++)
        ib->list[i] = r->users[i];
    r->users = ib->list;
    return rewrite(ib, &r->to) && rewrite(ib, &r->group) && rewrite(ib, &r->user) &&
           rewrite(ib, &r->after_user) && rewrite_conv(ib, &r->conv) &&
           (r->nusers < 1 || rewrite(ib, &ib->list[0])) &&
           (r->nusers < 2 || rewrite(ib, &ib->list[1])) &&
           (r->nusers < 3 || rewrite(ib, &ib->list[2])) && (r->nusers < 4); /* keep it small */
}

/* ---- checks from storage ---- */

/* Reads entry seq of conv into e (views into val); false if there is none. */
static bool read_entry(const char *conv, uint64_t seq, struct buf *key, struct buf *val,
                       struct entry *e)
{
    if (stg_key_log(key, conv, strlen(conv), seq))
        abort();
    int r = storage_get_sync(rt_storage(), STG_CF_LOG, key->data, key->len, val);
    if (r == -ENOENT)
        return false;
    if (r || entry_decode(val->data, (uint32_t)val->len, e) || !strv_eq_c(e->conv, conv) ||
        e->seq != seq)
        abort();
    return true;
}

static void check_gapless(struct buf *key, struct buf *val)
{
    for (uint32_t i = 0; i < rt_nacks; i++) {
        const struct rt_seq *a = &rt_acks[i];
        if (a->seq == 0 || a->seq > MAX_SEQ)
            abort();
        for (uint64_t s = 1; s <= a->seq; s++) {
            struct entry e;
            if (!read_entry(a->conv, s, key, val, &e))
                abort(); /* a hole below an answered seq */
        }
    }
}

/* Group members, replayed from the event entries. */
struct members {
    char ids[32][RT_IDMAX];
    int n;
    bool untracked; /* an event named only the first users of a longer list */
};

static int find(const struct members *m, const msgpack_object *u)
{
    for (int i = 0; i < m->n; i++)
        if (strlen(m->ids[i]) == u->via.str.size &&
            !memcmp(m->ids[i], u->via.str.ptr, u->via.str.size))
            return i;
    return -1;
}

static void change(struct members *m, const msgpack_object *u, bool add)
{
    if (!u || u->type != MSGPACK_OBJECT_STR || u->via.str.size >= RT_IDMAX)
        abort();
    int i = find(m, u);
    if (add && i < 0) {
        if (m->n == 32) {
            m->untracked = true;
            return;
        }
        memcpy(m->ids[m->n], u->via.str.ptr, u->via.str.size);
        m->ids[m->n++][u->via.str.size] = 0;
    } else if (!add && i >= 0) {
        memcpy(m->ids[i], m->ids[--m->n], RT_IDMAX);
    }
}

static const msgpack_object *field(const msgpack_object *m, const char *k)
{
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (m->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR &&
            m->via.map.ptr[i].key.via.str.size == strlen(k) &&
            !memcmp(m->via.map.ptr[i].key.via.str.ptr, k, strlen(k)))
            return &m->via.map.ptr[i].val;
    return NULL;
}

/* Applies an event entry's data to the member set. */
static void apply_event(struct members *m, const struct entry *e)
{
    msgpack_zone zone;
    msgpack_object o;
    size_t off = 0;
    msgpack_zone_init(&zone, 512);
    if (!e->data_raw ||
        msgpack_unpack((const char *)e->data_raw, e->data_len, &off, &zone, &o) !=
            MSGPACK_UNPACK_SUCCESS ||
        o.type != MSGPACK_OBJECT_MAP)
        abort();
    const msgpack_object *kind = field(&o, "kind"), *by = field(&o, "by"),
                         *list = field(&o, "users"), *count = field(&o, "count");
    if (!kind || kind->type != MSGPACK_OBJECT_STR || !list || list->type != MSGPACK_OBJECT_ARRAY ||
        !count || count->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        abort();
    struct strv k = {kind->via.str.ptr, kind->via.str.size};
    bool add = strv_eq_c(k, "create") || strv_eq_c(k, "join") || strv_eq_c(k, "invite");
    bool del = strv_eq_c(k, "kick") || strv_eq_c(k, "leave") || strv_eq_c(k, "dismiss");
    if ((add || del) && count->via.u64 > list->via.array.size)
        m->untracked = true;
    for (uint32_t i = 0; (add || del) && i < list->via.array.size; i++)
        change(m, &list->via.array.ptr[i], add);
    if (strv_eq_c(k, "create") || strv_eq_c(k, "join"))
        change(m, by, true);
    if (strv_eq_c(k, "leave") || strv_eq_c(k, "dismiss"))
        change(m, by, false);
    msgpack_zone_destroy(&zone);
}

static bool member(const struct members *m, const char *user)
{
    msgpack_object u = {.type = MSGPACK_OBJECT_STR,
                        .via.str = {.size = (uint32_t)strlen(user), .ptr = user}};
    return find(m, &u) >= 0;
}

static void check_members(struct buf *key, struct buf *val)
{
    for (uint32_t i = 0; i < rt_npushes; i++) {
        const struct rt_seq *p = &rt_pushes[i];
        const char *conv = p->conv;
        if (conv[0] == 'd') {
            /* d:a:b, ids never hold ':' */
            size_t ul = strlen(p->user);
            const char *b = strchr(conv + 2, ':');
            bool first = b && (size_t)(b - conv - 2) == ul && !memcmp(conv + 2, p->user, ul);
            if (!b || (!first && strcmp(b + 1, p->user)))
                abort(); /* pushed to a user outside the direct conversation */
            continue;
        }
        if (p->seq > MAX_SEQ)
            abort();
        struct members m = {.n = 0};
        bool before = false, after = false;
        for (uint64_t s = 1; s <= p->seq && !m.untracked; s++) {
            struct entry e;
            if (!read_entry(conv, s, key, val, &e))
                abort(); /* pushed an entry that is not in the log */
            before = member(&m, p->user);
            if (strv_eq_c(e.type, "event"))
                apply_event(&m, &e);
            after = member(&m, p->user);
        }
        if (!m.untracked && !before && !after)
            abort(); /* pushed to a user who is not a member at that seq */
    }
}

/* ---- the script ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rt_init();
    rt_now = 1700000000000ull;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_init();
    /* The prefix comes from the input, not from a run counter: ids decide the
     * home and owner shards and the chat layer's map orders, so an input
     * replayed in a fresh process sees the very ids it had while fuzzing. */
    snprintf(prefix, sizeof(prefix), "r%08x.", (unsigned)(hash_bytes(data, size) & 0xffffffffu));
    for (int i = 0; i < 4; i++)
        snprintf(users[i], sizeof(users[i]), "%su%d", prefix, i);
    struct cursor c = {data, size};
    struct req_decoder dec;
    struct buf key, val;
    req_decoder_init(&dec);
    buf_init(&key);
    buf_init(&val);
    rt_begin();
    int conns[RT_CONNS], nconns = 0;

    for (int step = 0; step < MAX_STEPS && c.n; step++) {
        uint8_t what = take(&c);
        struct idbuf ib = {.n = 0};
        struct req r;
        switch (what % 8) {
        case 0: {
            uint8_t u = take(&c), d = take(&c);
            int k = rt_hello(users[u % 4], devices[d % 3], !(what & 0x80));
            if (k >= 0)
                conns[nconns++] = k;
            break;
        }
        case 1:
            if (nconns)
                rt_close(conns[take(&c) % nconns]);
            break;
        case 2:
        case 3: {
            int k = nconns ? conns[take(&c) % nconns] : -1;
            struct rt_conn *rc = k >= 0 ? rt_conn(k) : NULL;
            if (rc && rc->open && !rc->ready)
                rt_settle(); /* the runtime holds frames until the session is ready */
            bool ok;
            if (what % 8 == 2) {
                uint8_t op = take(&c), a = take(&c), b = take(&c), x = take(&c);
                int from = 0;
                while (rc && from < 3 && strcmp(users[from], rc->user))
                    from++;
                menu(&r, &ib, from, op, a, b, x);
                ok = true;
            } else {
                uint32_t n = take(&c);
                n = n < c.n ? n : (uint32_t)c.n;
                uint8_t *frame = malloc(n ? n : 1);
                memcpy(frame, c.p, n);
                c.p += n;
                c.n -= n;
                ok = from_bytes(&r, &ib, &dec, frame, n);
                if (ok && rc && rc->open && rc->ready)
                    rt_request(k, &r);
                free(frame);
                ok = false; /* sent (or not) while the frame was alive */
            }
            if (ok && rc && rc->open && rc->ready)
                rt_request(k, &r);
            break;
        }
        case 4: {
            rt_now += (uint64_t)take(&c) * 1000;
            rt_tick();
            break;
        }
        case 5:
            rt_step(what & 0x80 ? (int)take(&c) : -1);
            break;
        case 6:
            rt_settle_order(take(&c));
            break;
        default:
            rt_fail_writes = take(&c) % 3 + 1;
        }
    }
    rt_fail_writes = 0;
    rt_settle();
    check_gapless(&key, &val);
    check_members(&key, &val);
    rt_end();
    req_decoder_deinit(&dec);
    buf_deinit(&key);
    buf_deinit(&val);
    return 0;
}
