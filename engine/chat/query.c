/*
 * Queries. A storage read holds a session reference; a reply whose session
 * has closed meanwhile is dropped.
 */
#include "engine/chat/query.h"

#include "engine/chat/core.h"
#include "engine/chat/session.h"
#include "engine/chat/values.h"

#include "base/err.h"
#include "protocol/ident.h"
#include "protocol/req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_OVERHEAD 64u /* a reply's frame header, op, id, list key and array header */

/* Packed size of a msgpack str of len bytes. */
static size_t mp_str_size(size_t len)
{
    return len + (len < 32 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5);
}

/* Packed size, at most, of one sync element: a map of 6, their keys, the
 * conversation id and 5 integers of up to 9 bytes. */
static size_t sync_elem_size(size_t convlen)
{
    return 1 + mp_str_size(4) + mp_str_size(8) + mp_str_size(7) + mp_str_size(8) + mp_str_size(7) +
           mp_str_size(6) + mp_str_size(convlen) + 5 * 9;
}

/* How many of the first n elements fit in a reply of max_frame bytes. */
static size_t fit_count(size_t max_frame, size_t n, size_t (*size_of)(const void *rows, size_t i),
                        const void *rows)
{
    size_t used = REPLY_OVERHEAD, k = 0;
    while (k < n && used + size_of(rows, k) <= max_frame)
        used += size_of(rows, k++);
    return k;
}

struct sync_row {
    const char *conv;
    uint32_t convlen;
    const struct uconv *uc;
};

/* The list's order, a total one: newest last_ts first, then by conversation id. */
static int by_ts_desc(const void *a, const void *b)
{
    const struct sync_row *x = a, *y = b;
    if (x->uc->last_ts != y->uc->last_ts)
        return x->uc->last_ts < y->uc->last_ts ? 1 : -1;
    return strv_cmp((struct strv){x->conv, x->convlen}, (struct strv){y->conv, y->convlen});
}

/* Packed size, at most, of a sync reply's "next" key and cursor. */
#define SYNC_NEXT_MAX (mp_str_size(4) + mp_str_size(21 + IDENT_CONV_MAX))

/* A page cursor, "<last_ts>:<conv>" of the last row of a page: the next page
 * starts after that row in the list's order. Only what query_sync writes is
 * taken: last_ts in decimal without a leading zero, then a valid
 * conversation id (one the user may no longer be in). 0, or -1 when
 * malformed. */
static int cursor_parse(struct strv s, uint64_t *ts, struct strv *conv)
{
    uint32_t i = 0;
    uint64_t v = 0;
    while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9' && i < 20) {
        uint64_t d = (uint64_t)(s.p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        i++;
    }
    if (i == 0 || (i > 1 && s.p[0] == '0') || i >= s.len || s.p[i] != ':')
        return -1;
    struct strv cv = {s.p + i + 1, s.len - i - 1};
    if (ident_conv_parse(cv, NULL, NULL) == CONV_BAD)
        return -1;
    *ts = v;
    *conv = cv;
    return 0;
}

static bool row_after(const struct sync_row *r, uint64_t ts, struct strv conv)
{
    return r->uc->last_ts < ts ||
           (r->uc->last_ts == ts && strv_cmp((struct strv){r->conv, r->convlen}, conv) > 0);
}

static size_t sync_row_size(const void *rows, size_t i)
{
    return sync_elem_size(((const struct sync_row *)rows)[i].convlen);
}

static void kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    enc_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

void query_sync(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    size_t n = map_count(&u->convs), i = 0;
    struct sync_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows) {
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
        return;
    }
    struct map_iter it;
    struct map_node *nd;
    map_iter_init(&it, &u->convs);
    while ((nd = map_next(&it)))
        rows[i++] = (struct sync_row){nd->key, nd->klen, nd->val};
    qsort(rows, n, sizeof(*rows), by_ts_desc);
    /* a page: the conversations after the cursor's row. A conversation that
     * got an entry since moved to the front and is skipped (its msg push
     * tells); one that left the list shifts nothing. */
    size_t skip = 0;
    if (r->has_after) {
        uint64_t ts;
        struct strv conv;
        if (cursor_parse(r->after_user, &ts, &conv) < 0) {
            free(rows);
            chat_reply_err(c, s->conn, true, r->id, -RP_EREQUEST, "bad cursor");
            return;
        }
        while (skip < n && !row_after(&rows[skip], ts, conv))
            skip++;
    }
    size_t k = fit_count(c->env.cfg->max_frame, n - skip, sync_row_size, rows + skip);
    if (skip + k < n) /* a cursor goes with the page: room for it */
        k = fit_count(c->env.cfg->max_frame - SYNC_NEXT_MAX, n - skip, sync_row_size, rows + skip);
    bool more = k > 0 && skip + k < n;
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, r->id, more ? 3 : 2);
    enc_pack_cstr(&pk, "convs");
    msgpack_pack_array(&pk, k);
    for (i = skip; i < skip + k; i++) {
        const struct uconv *uc = rows[i].uc;
        uint64_t rd = home_read_seq(uc);
        msgpack_pack_map(&pk, 6);
        enc_pack_cstr(&pk, "conv");
        enc_pack_strv(&pk, (struct strv){rows[i].conv, rows[i].convlen});
        kv_u64(&pk, "last_seq", uc->last_seq);
        kv_u64(&pk, "last_ts", uc->last_ts);
        kv_u64(&pk, "read_seq", rd);
        kv_u64(&pk, "ack_seq", map_as_u64(map_get(&s->acks, rows[i].conv, rows[i].convlen)));
        kv_u64(&pk, "unread", uc->last_seq - rd);
    }
    enc_pack_cstr(&pk, "more");
    if (more) {
        msgpack_pack_true(&pk);
        /* k > 0: a row always fits an empty reply */
        const struct sync_row *last = &rows[skip + k - 1];
        char cur[24 + IDENT_CONV_MAX];
        int cl = snprintf(cur, sizeof(cur), "%llu:%.*s", (unsigned long long)last->uc->last_ts,
                          (int)last->convlen, last->conv);
        enc_pack_cstr(&pk, "next");
        enc_pack_strv(&pk, (struct strv){cur, (uint32_t)(cl < 0 ? 0 : cl)});
    } else {
        msgpack_pack_false(&pk);
    }
    free(rows);
    if (enc_end(&c->fb, start) == 0)
        chat_send(c, s->conn, chat_frame(&c->fb));
    buf_reset(&c->fb);
}

/* ---- history ---- */

struct hist {
    struct session *s;
    uint32_t id;
    bool backward; /* `before` (or neither): the page is the newest below the bound */
};

static void on_history(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct hist *h = ctx;
    struct session *s = h->s;
    struct strv conv = {(const char *)(h + 1), (uint32_t)arg};
    if (s->closed)
        goto out;
    if (err < 0) {
        chat_reply_err(c, s->conn, true, h->id, err, NULL);
        goto out;
    }
    /* ascending order: a backward scan came newest first */
    uint32_t n = res->n, first = 0;
    bool more = res->more;
    size_t total = REPLY_OVERHEAD + conv.len;
    for (uint32_t k = 0; k < n; k++) {
        /* keep the entries nearest the bound: for a backward page the newest */
        uint32_t i = k;
        if (total + res->kv[i].vlen > c->env.cfg->max_frame) {
            n = k;
            more = true;
            break;
        }
        total += res->kv[i].vlen;
    }
    msgpack_packer pk;
    size_t start = enc_ok_begin(&c->fb, &pk, h->id, 3);
    enc_pack_cstr(&pk, "conv");
    enc_pack_strv(&pk, conv);
    enc_pack_cstr(&pk, "msgs");
    msgpack_pack_array(&pk, n);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = h->backward ? first + n - 1 - k : first + k;
        enc_raw(&c->fb, res->kv[i].val, res->kv[i].vlen);
    }
    enc_pack_cstr(&pk, "more");
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (enc_end(&c->fb, start) == 0)
        chat_send(c, s->conn, chat_frame(&c->fb));
    else
        chat_reply_err(c, s->conn, true, h->id, -ENOMEM, NULL);
    buf_reset(&c->fb);
out:
    stg_result_free(res);
    free(h);
    session_query_end(c, s);
}

void query_history(struct chat *c, struct session *s, const struct req *r)
{
    struct strv a, b, me = {s->u->id, s->u->idlen};
    enum conv_kind k = ident_conv_parse(r->conv, &a, &b);
    uint64_t joined = 1;
    struct uconv *uc = map_get(&s->u->convs, r->conv.p, r->conv.len);
    if (k == CONV_BAD) {
        chat_reply_err(c, s->conn, true, r->id, -RP_EREQUEST, "bad conv");
        return;
    }
    if ((k == CONV_DIRECT && !strv_eq(a, me) && !strv_eq(b, me)) || (k == CONV_GROUP && !uc)) {
        chat_reply_err(c, s->conn, true, r->id, -EPERM, "not a member");
        return;
    }
    if (uc && uc->joined_seq > joined)
        joined = uc->joined_seq;
    uint32_t limit = r->has_limit ? r->limit : 50;
    if (limit > REQ_HISTORY_LIMIT_MAX)
        limit = REQ_HISTORY_LIMIT_MAX;
    struct hist *h = malloc(sizeof(*h) + r->conv.len);
    struct buf lo, hi;
    buf_init(&lo);
    buf_init(&hi);
    if (!h)
        goto oom;
    h->s = s;
    h->id = r->id;
    h->backward = !r->has_after;
    memcpy(h + 1, r->conv.p, r->conv.len);
    uint64_t from = joined;
    if (r->has_after && r->after >= from)
        from = r->after < UINT64_MAX ? r->after + 1 : UINT64_MAX;
    int rc = stg_key_log(&lo, r->conv.p, r->conv.len, from);
    if (rc == 0 && r->has_before && !r->has_after) {
        rc = stg_key_log(&hi, r->conv.p, r->conv.len, r->before);
    } else if (rc == 0) {
        rc = stg_key_prefix(&hi, r->conv.p, r->conv.len);
        if (rc == 0)
            rc = stg_key_successor(&hi);
    }
    if (rc < 0)
        goto oom;
    if (r->has_before && !r->has_after && r->before <= from) {
        /* nothing below the bound: an empty page, read nothing */
        struct stg_result *empty = calloc(1, sizeof(*empty));
        if (!empty)
            goto oom;
        session_query_start(c, s);
        on_history(c, h, r->conv.len, 0, empty);
        goto done;
    }
    struct stg_read q = {.kind = STG_SCAN,
                         .cf = STG_CF_LOG,
                         .key = lo.data,
                         .klen = lo.len,
                         .upper = hi.data,
                         .ulen = hi.len,
                         .limit = limit,
                         .reverse = h->backward,
                         /* a page holds at most max_frame: the entries past
                          * the first that would not fit are not read (with
                          * large entries a page of 200 read 100 times what
                          * it sent) */
                         .max_bytes = c->env.cfg->max_frame};
    rc = io_read(c, &q, on_history, h, r->conv.len);
    if (rc < 0) {
        chat_reply_err(c, s->conn, true, r->id, rc, NULL);
        free(h);
        goto done;
    }
    session_query_start(c, s);
    goto done;
oom:
    free(h);
    chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
done:
    buf_deinit(&lo);
    buf_deinit(&hi);
}

/* ---- group.list ---- */

struct glist {
    struct session *s;
    uint32_t id, pending, n;
    bool more; /* groups after the rows read */
    int err;
    struct glist_row {
        char gid[65];
        uint32_t gidlen;
        uint8_t role;
        char *name;
    } rows[];
};

/* Packed size of one group.list element: a map of 3, its keys and values. */
static size_t glist_row_size(const void *rows, size_t i)
{
    const struct glist_row *r = &((const struct glist_row *)rows)[i];
    return 1 + mp_str_size(5) + mp_str_size(4) + mp_str_size(4) + mp_str_size(r->gidlen) +
           mp_str_size(r->name ? strlen(r->name) : 0) + mp_str_size(strlen(role_name(r->role)));
}

static void glist_finish(struct chat *c, struct glist *g)
{
    struct session *s = g->s;
    if (!s->closed) {
        if (g->err < 0) {
            chat_reply_err(c, s->conn, true, g->id, g->err, NULL);
        } else {
            uint32_t n = (uint32_t)fit_count(c->env.cfg->max_frame, g->n, glist_row_size, g->rows);
            msgpack_packer pk;
            size_t start = enc_ok_begin(&c->fb, &pk, g->id, 2);
            enc_pack_cstr(&pk, "groups");
            msgpack_pack_array(&pk, n);
            for (uint32_t i = 0; i < n; i++) {
                msgpack_pack_map(&pk, 3);
                enc_pack_cstr(&pk, "group");
                enc_pack_strv(&pk, (struct strv){g->rows[i].gid, g->rows[i].gidlen});
                enc_pack_cstr(&pk, "name");
                enc_pack_cstr(&pk, g->rows[i].name ? g->rows[i].name : "");
                enc_pack_cstr(&pk, "role");
                enc_pack_cstr(&pk, role_name(g->rows[i].role));
            }
            enc_pack_cstr(&pk, "more");
            if (g->more || n < g->n)
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
            if (enc_end(&c->fb, start) == 0)
                chat_send(c, s->conn, chat_frame(&c->fb));
            buf_reset(&c->fb);
        }
    }
    for (uint32_t i = 0; i < g->n; i++)
        free(g->rows[i].name);
    free(g);
    session_query_end(c, s);
}

static void on_group_meta(struct chat *c, void *ctx, uint64_t arg, int err, struct stg_result *res)
{
    struct glist *g = ctx;
    struct conv_meta m;
    if (err == 0 && val_conv_decode(res->kv[0].val, res->kv[0].vlen, &m) == 0)
        g->rows[arg].name = strndup(m.name.p, m.name.len);
    else if (err < 0 && err != -ENOENT)
        g->err = err;
    stg_result_free(res);
    if (--g->pending == 0)
        glist_finish(c, g);
}

static int by_key(const void *a, const void *b)
{
    const struct map_node *x = *(const struct map_node *const *)a;
    const struct map_node *y = *(const struct map_node *const *)b;
    return strv_cmp((struct strv){x->key, x->klen}, (struct strv){y->key, y->klen});
}

/* The user's groups in group id order, after r's cursor: those that can fit a
 * reply get their names read (the conv family holds them), the reply takes
 * the ones that fit and says whether more follow. */
void query_group_list(struct chat *c, struct session *s, const struct req *r)
{
    struct user *u = s->u;
    size_t total = map_count(&u->convs), n = 0;
    struct map_node **nodes = calloc(total ? total : 1, sizeof(*nodes));
    if (!nodes) {
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
        return;
    }
    struct map_iter it;
    struct map_node *nd;
    map_iter_init(&it, &u->convs);
    while ((nd = map_next(&it)))
        if (((struct uconv *)nd->val)->kind == CONV_GROUP && nd->klen > 2 &&
            nd->klen - 2 <= IDENT_USER_MAX &&
            (!r->has_after ||
             strv_cmp((struct strv){nd->key + 2, nd->klen - 2}, r->after_user) > 0))
            nodes[n++] = nd;
    qsort(nodes, n, sizeof(*nodes), by_key); /* "g:" + id: the order of the ids */
    /* no more rows than the smallest of them could fill a frame with */
    size_t cap = c->env.cfg->max_frame / glist_row_size(&(struct glist_row){.gidlen = 1}, 0) + 1;
    uint32_t take = (uint32_t)(n < cap ? n : cap);
    struct glist *g = calloc(1, sizeof(*g) + take * sizeof(g->rows[0]));
    if (!g) {
        free(nodes);
        chat_reply_err(c, s->conn, true, r->id, -ENOMEM, NULL);
        return;
    }
    g->s = s;
    g->id = r->id;
    g->more = take < n;
    g->pending = 1;
    session_query_start(c, s);
    for (uint32_t i = 0; i < take; i++) {
        nd = nodes[i];
        struct glist_row *row = &g->rows[g->n];
        row->gidlen = nd->klen - 2;
        memcpy(row->gid, nd->key + 2, row->gidlen);
        row->role = ((struct uconv *)nd->val)->role;
        int rc = stg_key_conv(&c->kb, nd->key, nd->klen);
        if (rc == 0)
            rc = io_get(c, STG_CF_CONV, c->kb.data, c->kb.len, on_group_meta, g, g->n);
        if (rc < 0) {
            g->err = rc;
            break;
        }
        g->pending++;
        g->n++;
    }
    free(nodes);
    if (--g->pending == 0)
        glist_finish(c, g);
    /* otherwise the last read's completion finishes (and frees) g */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
}
