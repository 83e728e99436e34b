/*
 * Connections of one shard. Slots live in one slab per shard; a connection is
 * named outside this file by (slot, generation), so a completion or a chat
 * reference to a slot that has since been reused is recognised and dropped.
 *
 * Invariants:
 * - `inflight` counts the operations of this connection whose final
 *   completion has not been reaped (the multishot recv, the one sendmsg,
 *   shutdown, close, handoff). A CLOSING connection is freed only when it is
 *   zero after its direct descriptor was closed.
 * - At most one sendmsg is in flight; frames queued meanwhile go out together
 *   in the next one, from the flush phase.
 * - Replies go out in the iteration that queued them (the flush list). A
 *   connection with only pushes queued waits its turn on the push list, which
 *   sends PUSH_BUDGET per iteration, oldest first: a large fan-out is spread
 *   over iterations, the loop reads requests between them, and what is pushed
 *   meanwhile joins the sends still to come (more frames per socket write the
 *   busier the shard). A connection on the push list is not freed until the
 *   list has passed it.
 * - Every frame queued is a reference to a shared rbuf; nothing is copied per
 *   recipient.
 */
#include "engine/conn.h"

#include "base/err.h"
#include "base/log.h"
#include "engine/server.h"
#include "engine/shard.h"
#include "engine/uring.h"
#include "protocol/enc.h"
#include "protocol/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WHEEL_SLOTS   64u
#define CLOSE_GRACE_S 5u
#define GEN_MASK      0xffffffu

/* ---- slab ---- */

int conn_table_init(struct shard *sh, uint32_t capacity)
{
    sh->conns = calloc(capacity, sizeof(*sh->conns));
    sh->wheel = malloc(WHEEL_SLOTS * sizeof(*sh->wheel));
    if (!sh->conns || !sh->wheel)
        return -ENOMEM;
    sh->nconns = capacity;
    for (uint32_t i = 0; i < capacity; i++)
        sh->conns[i].misc_next = i + 1 < capacity ? i + 1 : CONN_NONE;
    sh->free_head = 0;
    sh->flush_head = sh->dead_head = sh->rearm_head = sh->handoff_head = CONN_NONE;
    sh->push_head = sh->push_tail = CONN_NONE;
    sh->ready_head = CONN_NONE;
    for (uint32_t i = 0; i < WHEEL_SLOTS; i++)
        sh->wheel[i] = CONN_NONE;
    return 0;
}

static void outq_free(struct outq *q);

static void wsx_free(struct conn_ws *wsx)
{
    if (!wsx)
        return;
    ws_free(wsx->ws);
    buf_deinit(&wsx->hs);
    free(wsx);
}

void conn_hold_free(struct hold *h)
{
    if (h)
        free(h->data);
    free(h);
}

void handoff_free(struct handoff *ho)
{
    if (!ho)
        return;
    free(ho->leftover);
    wsx_free(ho->wsx);
    free(ho);
}

void conn_table_deinit(struct shard *sh)
{
    for (uint32_t i = 0; sh->conns && i < sh->nconns; i++) {
        struct conn *c = &sh->conns[i];
        if (c->state == CONN_FREE)
            continue;
        outq_free(c->oq);
        frame_dec_deinit(&c->dec);
        handoff_free(c->ho);
        wsx_free(c->wsx);
        conn_hold_free(c->hold);
    }
    free(sh->conns);
    free(sh->wheel);
    sh->conns = NULL;
    sh->wheel = NULL;
}

uint32_t conn_slot(const struct shard *sh, const struct conn *c)
{
    return (uint32_t)(c - sh->conns);
}

struct conn *conn_get(struct shard *sh, conn_id_t id)
{
    uint32_t slot = (uint32_t)(id >> 32);
    if (slot >= sh->nconns)
        return NULL;
    struct conn *c = &sh->conns[slot];
    if (c->state == CONN_FREE || c->gen != (uint32_t)id)
        return NULL;
    return c;
}

/* ---- timing wheel: one slot per second, lazily re-checked ---- */

static void wheel_insert(struct shard *sh, struct conn *c, uint32_t deadline)
{
    uint32_t slot_time = deadline;
    if (slot_time <= sh->tick)
        slot_time = sh->tick + 1;
    if (slot_time - sh->tick >= WHEEL_SLOTS)
        slot_time = sh->tick + WHEEL_SLOTS - 1;
    uint32_t s = slot_time % WHEEL_SLOTS, idx = conn_slot(sh, c);
    c->tw_slot = s;
    c->tw_prev = CONN_NONE;
    c->tw_next = sh->wheel[s];
    if (c->tw_next != CONN_NONE)
        sh->conns[c->tw_next].tw_prev = idx;
    sh->wheel[s] = idx;
}

static void wheel_remove(struct shard *sh, struct conn *c)
{
    if (c->tw_slot == CONN_NONE)
        return;
    if (c->tw_prev != CONN_NONE)
        sh->conns[c->tw_prev].tw_next = c->tw_next;
    else
        sh->wheel[c->tw_slot] = c->tw_next;
    if (c->tw_next != CONN_NONE)
        sh->conns[c->tw_next].tw_prev = c->tw_prev;
    c->tw_prev = c->tw_next = c->tw_slot = CONN_NONE;
}

/* Ticks are whole seconds and born / last_rx the tick an event fell in, so a
 * timeout counts one tick more: it fires after timeout to timeout + 1 s,
 * never before. */
static uint32_t conn_deadline(const struct shard *sh, const struct conn *c)
{
    switch (c->state) {
    case CONN_EDGE:
        return c->born + sh->cfg->hello_timeout + 1;
    case CONN_HANDOFF:
        return c->born + sh->cfg->hello_timeout + 1 + CLOSE_GRACE_S;
    case CONN_HOME:
        return c->last_rx + sh->cfg->idle_timeout + 1;
    default:
        return c->last_rx + CLOSE_GRACE_S; /* CLOSING: last_rx is when closing began */
    }
}

static void conn_teardown(struct shard *sh, struct conn *c);

void conn_timer_reset(struct shard *sh, struct conn *c)
{
    wheel_remove(sh, c);
    wheel_insert(sh, c, conn_deadline(sh, c));
}

void conn_timers(struct shard *sh)
{
    uint32_t s = sh->tick % WHEEL_SLOTS;
    uint32_t idx = sh->wheel[s];
    sh->wheel[s] = CONN_NONE;
    while (idx != CONN_NONE) {
        struct conn *c = &sh->conns[idx];
        uint32_t next = c->tw_next;
        c->tw_prev = c->tw_next = c->tw_slot = CONN_NONE;
        uint32_t deadline = conn_deadline(sh, c);
        if (deadline > sh->tick) {
            wheel_insert(sh, c, deadline);
        } else if (c->state == CONN_CLOSING) {
            /* The peer would not take its last frames: stop waiting. */
            conn_teardown(sh, c);
            wheel_insert(sh, c, sh->tick + WHEEL_SLOTS - 1);
        } else if (c->state == CONN_HANDOFF && c->ho && c->ho->step == HO_ADOPT_PENDING) {
            /* The descriptor is in the home shard's table already, and only
             * the adopt message can free it there: wait for room in the ring. */
            wheel_insert(sh, c, sh->tick + CLOSE_GRACE_S);
        } else {
            log_debug("conn_timeout", "slot=%u state=%u", idx, c->state);
            conn_close(sh, c, NULL);
            if (c->tw_slot == CONN_NONE)
                wheel_insert(sh, c, conn_deadline(sh, c));
        }
        idx = next;
    }
}

/* ---- allocation ---- */

struct conn *conn_new(struct shard *sh, uint32_t fd, enum conn_state state)
{
    if (sh->free_head == CONN_NONE)
        return NULL;
    uint32_t idx = sh->free_head;
    struct conn *c = &sh->conns[idx];
    sh->free_head = c->misc_next;
    uint32_t gen = (c->gen + 1) & GEN_MASK;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->fd = fd;
    c->state = (uint8_t)state;
    c->flush_next = c->push_next = c->misc_next = c->dead_next = CONN_NONE;
    c->born = c->last_rx = sh->tick;
    c->rate_tokens = sh->cfg->rate_burst * 1000u;
    c->rate_ms = (uint32_t)sh->now_ms;
    frame_dec_init(&c->dec, sh->cfg->max_frame);
    wheel_insert(sh, c, conn_deadline(sh, c));
    sh->live++;
    sh->stats.conns = sh->live;
    return c;
}

static void outq_free(struct outq *q)
{
    if (!q)
        return;
    for (uint32_t i = 0; i < q->n; i++)
        rbuf_unref(q->items[(q->head + i) % q->cap].b);
    free(q->items);
    free(q->items_sent);
    if (q->iov != q->iov_small)
        free(q->iov);
    free(q);
}

void conn_free_dead(struct shard *sh)
{
    uint32_t later = CONN_NONE; /* still linked on the push list */
    while (sh->dead_head != CONN_NONE) {
        uint32_t idx = sh->dead_head;
        struct conn *c = &sh->conns[idx];
        sh->dead_head = c->dead_next;
        if (c->flags & CONN_F_IN_PUSH) {
            c->dead_next = later;
            later = idx;
            continue;
        }
        wheel_remove(sh, c);
        outq_free(c->oq);
        frame_dec_deinit(&c->dec);
        handoff_free(c->ho);
        wsx_free(c->wsx);
        conn_hold_free(c->hold);
        /* one handed to its home shard lives on there: closed only when it ends */
        bool handed = c->flags & CONN_F_HANDED;
        uint32_t gen = c->gen;
        memset(c, 0, sizeof(*c));
        c->gen = gen;
        c->state = CONN_FREE;
        c->misc_next = sh->free_head;
        sh->free_head = idx;
        sh->live--;
        sh->stats.conns = sh->live;
        sh->stats.closes += !handed;
    }
    sh->dead_head = later;
}

/* ---- closing ---- */

static void fd_close(struct shard *sh, struct conn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_close_direct(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_CLOSE, conn_slot(sh, c), c->gen));
    c->flags |= CONN_F_FD_CLOSING;
    c->inflight++;
}

/* Shut the socket down so the recv and send end, then close the descriptor
 * once nothing is in flight. A socket handed to another shard is only closed
 * here: shutting it down would cut the connection its home now serves. */
static void conn_teardown(struct shard *sh, struct conn *c)
{
    if (c->flags & (CONN_F_SHUT | CONN_F_FD_CLOSING))
        return;
    if (c->flags & CONN_F_HANDED) {
        if (!c->inflight)
            fd_close(sh, c);
        return;
    }
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_shutdown(sqe, (int)c->fd, SHUT_RDWR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_SHUTDOWN, conn_slot(sh, c), c->gen));
    c->flags |= CONN_F_SHUT;
    c->inflight++;
}

void conn_op_done(struct shard *sh, struct conn *c)
{
    c->inflight--;
    if (c->state != CONN_CLOSING || c->inflight)
        return;
    if (c->flags & CONN_F_FD_CLOSING) {
        c->dead_next = sh->dead_head;
        sh->dead_head = conn_slot(sh, c);
    } else if (c->flags & (CONN_F_SHUT | CONN_F_HANDED)) {
        fd_close(sh, c);
    } else if (!c->oq || !c->oq->n) {
        /* with frames still queued (a short send left some) the flush pass
         * sends them, and the send's completion or the grace ends it */
        conn_teardown(sh, c);
    }
}

/* File c for a send: on the flush list when a reply is queued, else at the
 * end of the push list. Both at once is harmless (a list skips a connection
 * whose send is in flight). */
static void queue_flush(struct shard *sh, struct conn *c)
{
    if (c->flags & CONN_F_SEND)
        return; /* its completion files it again */
    if (c->oq && c->oq->urgent) {
        if (c->flags & CONN_F_IN_FLUSH)
            return;
        c->flags |= CONN_F_IN_FLUSH;
        c->flush_next = sh->flush_head;
        sh->flush_head = conn_slot(sh, c);
        return;
    }
    if (c->flags & (CONN_F_IN_FLUSH | CONN_F_IN_PUSH))
        return;
    uint32_t slot = conn_slot(sh, c);
    c->flags |= CONN_F_IN_PUSH;
    c->push_next = CONN_NONE;
    if (sh->push_tail == CONN_NONE)
        sh->push_head = slot;
    else
        sh->conns[sh->push_tail].push_next = slot;
    sh->push_tail = slot;
}

static int queue_frame(struct shard *sh, struct conn *c, struct rbuf *frame, bool urgent);

/* Appends id to a growable list; -ENOMEM leaves it unchanged. */
static int id_list_push(conn_id_t **list, uint32_t *n, uint32_t *cap, conn_id_t id)
{
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 64;
        conn_id_t *p = realloc(*list, ncap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *list = p;
        *cap = ncap;
    }
    (*list)[(*n)++] = id;
    return 0;
}

static bool ws_live(const struct conn *c)
{
    return c->wsx && c->wsx->upgraded && !(c->flags & CONN_F_HANDED);
}

/* Drop what is queued but not yet handed to the kernel, past the first keep items. */
static void outq_drop_unsent(struct outq *q, uint32_t keep)
{
    while (q->n > keep) {
        struct oitem *it = &q->items[(q->head + q->n - 1) % q->cap];
        q->bytes -= oitem_len(it) - it->off;
        rbuf_unref(it->b);
        q->n--;
    }
    if (q->urgent > q->n)
        q->urgent = q->n;
}

/*
 * `bye slow`: the client does not keep up with its queue, or with the pushes
 * held for it during a catch-up. Everything it misses is durable: it
 * reconnects and resumes from its ack cursor. So the pushes not yet on the
 * wire go, and the bye comes right behind what is: the items of the send in
 * flight (or, between sends, the rest of a frame a short send began), then
 * the replies and control frames queued (a hello's answer among them: every
 * hello is answered before the bye), in their order. Queued behind megabytes
 * of pushes, the bye would not reach a slow reader within the close's grace.
 */
static void drop_for_slow(struct conn *c)
{
    struct outq *q = c->oq;
    if (!q)
        return;
    uint32_t keep;
    if (c->flags & CONN_F_SEND)
        keep = q->sending; /* the kernel reads them */
    else
        keep = q->n && q->items[q->head].off ? 1 : 0;
    uint32_t n = keep, urgent = 0;
    for (uint32_t i = keep; i < q->n; i++) {
        struct oitem *it = &q->items[(q->head + i) % q->cap];
        if (it->urgent) {
            q->items[(q->head + n++) % q->cap] = *it;
            urgent = n;
        } else {
            q->bytes -= oitem_len(it);
            rbuf_unref(it->b);
        }
    }
    q->n = n;
    if (q->urgent > keep)
        q->urgent = urgent > keep ? urgent : keep;
}

void conn_close(struct shard *sh, struct conn *c, const char *reason)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return;
    if (reason && !strcmp(reason, "slow")) {
        sh->stats.bye_slow++;
        log_info("bye_slow", "slot=%u queued=%u", conn_slot(sh, c), c->oq ? c->oq->bytes : 0);
        drop_for_slow(c);
    }
    if (c->flags & CONN_F_CHAT) {
        /* Told to the chat layer from the loop, never from inside a call the
         * chat layer made (a send that overflowed, a close it asked for):
         * it may be walking the very session list this would change. */
        c->flags &= (uint16_t)~CONN_F_CHAT;
        conn_id_t id = conn_id(sh, c, conn_slot(sh, c));
        if (id_list_push(&sh->closed, &sh->nclosed, &sh->closed_cap, id))
            chat_on_close(sh->chat, id); /* out of memory: better now than never */
    }
    if (reason && !(c->flags & CONN_F_HANDED)) {
        struct buf b;
        buf_init(&b);
        if (enc_bye(&b, reason) == 0) {
            struct rbuf *rb = rbuf_copy(b.data, (uint32_t)b.len);
            if (rb) {
                queue_frame(sh, c, rb, true);
                rbuf_unref(rb);
            }
        }
        buf_deinit(&b);
    }
    if (ws_live(c) && !ws_closing(c->wsx->ws)) {
        size_t n;
        ws_close(c->wsx->ws, reason ? 1001 : 1000);
        const uint8_t *out = ws_take_output(c->wsx->ws, &n);
        if (out)
            conn_send_raw(sh, c, out, n);
    }
    c->state = CONN_CLOSING;
    c->last_rx = sh->tick; /* the grace period for the last frames starts now */
    bool pending = c->oq && c->oq->n;
    if (!pending || (c->flags & CONN_F_HANDED)) {
        conn_teardown(sh, c);
    } else {
        /* due at the end of the grace, not at the idle deadline it had */
        if (c->tw_slot != CONN_NONE)
            conn_timer_reset(sh, c);
        queue_flush(sh, c);
    }
}

/* ---- sending ---- */

static int queue_item(struct shard *sh, struct conn *c, const struct oitem *item, bool urgent)
{
    struct outq *q = c->oq;
    if (!q) {
        /* Not zeroed: the iovecs and msghdr are filled by send_start. */
        q = c->oq = malloc(sizeof(*q));
        if (!q)
            return -ENOMEM;
        q->head = q->n = q->cap = q->bytes = q->sending = q->urgent = 0;
        q->items = q->items_sent = NULL;
        q->iov = q->iov_small;
        q->iov_cap = OUTQ_IOV_SMALL;
    }
    if (q->n == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 4;
        struct oitem *items = malloc(cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        for (uint32_t i = 0; i < q->n; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        if ((c->flags & CONN_F_SEND) && !q->items_sent)
            q->items_sent = q->items; /* the kernel may still read headers in it */
        else
            free(q->items);
        q->items = items;
        q->head = 0;
        q->cap = cap;
    }
    struct oitem *slot = &q->items[(q->head + q->n) % q->cap];
    *slot = *item;
    slot->urgent = urgent;
    rbuf_ref(item->b);
    q->n++;
    q->bytes += oitem_len(item);
    if (urgent)
        q->urgent = q->n;
    queue_flush(sh, c);
    return 0;
}

static int queue_frame(struct shard *sh, struct conn *c, struct rbuf *frame, bool urgent)
{
    struct oitem it = {.b = frame};
    if (ws_live(c)) {
        it.skip = FRAME_HDR;
        it.hlen = (uint8_t)ws_frame_header(it.hdr, frame->len - FRAME_HDR);
    }
    return queue_item(sh, c, &it, urgent);
}

int conn_send_raw(struct shard *sh, struct conn *c, const void *p, size_t len)
{
    struct rbuf *rb = rbuf_copy(p, (uint32_t)len);
    if (!rb)
        return -ENOMEM;
    struct oitem it = {.b = rb};
    int r = queue_item(sh, c, &it, true);
    rbuf_unref(rb);
    return r;
}

/* Would len more bytes take c's queue over outbound_limit? */
static bool over_limit(const struct shard *sh, const struct conn *c, uint64_t len)
{
    return (c->oq ? c->oq->bytes : 0) + len > sh->cfg->outbound_limit;
}

static int conn_queue(struct shard *sh, struct conn *c, struct rbuf *frame, bool urgent)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return -ENOENT;
    if (over_limit(sh, c, (uint64_t)frame->len + 10)) {
        conn_close(sh, c, "slow"); /* see drop_for_slow */
        return -RP_EFULL;
    }
    sh->stats.frames_out++;
    return queue_frame(sh, c, frame, urgent) ? -ENOENT : 0;
}

int conn_send_control(struct shard *sh, struct conn *c, const void *p, size_t len)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return -ENOENT;
    if (over_limit(sh, c, len)) {
        conn_close(sh, c, "slow"); /* see drop_for_slow */
        return -RP_EFULL;
    }
    return conn_send_raw(sh, c, p, len);
}

int conn_send(struct shard *sh, struct conn *c, struct rbuf *frame)
{
    return conn_queue(sh, c, frame, true);
}

int conn_push(struct shard *sh, struct conn *c, struct rbuf *frame)
{
    return conn_queue(sh, c, frame, false);
}

void conn_send_error(struct shard *sh, struct conn *c, bool has_id, uint32_t id, int code,
                     const char *msg)
{
    struct buf b;
    buf_init(&b);
    if (enc_error(&b, has_id, id, (enum err_code)code, msg) == 0) {
        struct rbuf *rb = rbuf_copy(b.data, (uint32_t)b.len);
        if (rb) {
            conn_send(sh, c, rb);
            rbuf_unref(rb);
        }
    }
    buf_deinit(&b);
}

static void send_start(struct shard *sh, struct conn *c)
{
    struct outq *q = c->oq;
    uint32_t n = 0, i = 0;
    if (q->n + 2 > q->iov_cap && q->iov == q->iov_small) {
        /* a backlog: one write for up to OUTQ_IOV iovecs of it (or, without
         * the memory, a few frames at a time) */
        struct iovec *v = malloc(OUTQ_IOV * sizeof(*v));
        if (v) {
            q->iov = v;
            q->iov_cap = OUTQ_IOV;
        }
    }
    for (; i < q->n; i++) {
        struct oitem *it = &q->items[(q->head + i) % q->cap];
        uint32_t off = it->off;
        if (n + (off < it->hlen ? 2u : 1u) > q->iov_cap)
            break;
        if (off < it->hlen) {
            q->iov[n].iov_base = it->hdr + off;
            q->iov[n++].iov_len = it->hlen - off;
            off = it->hlen;
        }
        uint32_t body = off - it->hlen + it->skip;
        q->iov[n].iov_base = it->b->data + body;
        q->iov[n++].iov_len = it->b->len - body;
    }
    q->sending = i;
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    if (n == 1) {
        /* The common case in a fan-out: one frame. A plain send spares the
         * kernel importing a msghdr and an iovec array. */
        io_uring_prep_send(sqe, (int)c->fd, q->iov[0].iov_base, q->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        memset(&q->msg, 0, sizeof(q->msg));
        q->msg.msg_iov = q->iov;
        q->msg.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, (int)c->fd, &q->msg, MSG_NOSIGNAL);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_SEND, conn_slot(sh, c), c->gen));
    c->flags |= CONN_F_SEND;
    c->inflight++;
}

void conn_flush_all(struct shard *sh)
{
    const uint16_t no_send =
        CONN_F_SEND | CONN_F_SHUT | CONN_F_FD_CLOSING | CONN_F_HANDING | CONN_F_HANDED;
    while (sh->flush_head != CONN_NONE) {
        struct conn *c = &sh->conns[sh->flush_head];
        sh->flush_head = c->flush_next;
        c->flags &= (uint16_t)~CONN_F_IN_FLUSH;
        if (!(c->flags & no_send) && c->oq && c->oq->n)
            send_start(sh, c);
    }
    for (uint32_t sent = 0; sh->push_head != CONN_NONE && sent < PUSH_BUDGET;) {
        struct conn *c = &sh->conns[sh->push_head];
        sh->push_head = c->push_next;
        if (sh->push_head == CONN_NONE)
            sh->push_tail = CONN_NONE;
        c->flags &= (uint16_t)~CONN_F_IN_PUSH;
        if (!(c->flags & no_send) && c->oq && c->oq->n) {
            send_start(sh, c);
            sent++;
        }
    }
}

static struct conn *conn_of_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
    uint32_t slot = ud_slot(cqe->user_data);
    if (slot >= sh->nconns)
        return NULL;
    struct conn *c = &sh->conns[slot];
    if (c->state == CONN_FREE || c->gen != ud_gen(cqe->user_data))
        return NULL;
    return c;
}

void conn_on_send(struct shard *sh, struct io_uring_cqe *cqe)
{
    struct conn *c = conn_of_cqe(sh, cqe);
    if (!c)
        return;
    c->flags &= (uint16_t)~CONN_F_SEND;
    struct outq *q = c->oq;
    if (cqe->res < 0) {
        if (q)
            outq_drop_unsent(q, 0);
        conn_close(sh, c, NULL);
        conn_teardown(sh, c);
        conn_op_done(sh, c);
        return;
    }
    if (q->items_sent) {
        free(q->items_sent); /* the send that pointed into it is over */
        q->items_sent = NULL;
    }
    uint32_t sent = (uint32_t)cqe->res;
    sh->stats.bytes_out += sent;
    while (q->n && sent) {
        struct oitem *it = &q->items[q->head];
        uint32_t left = oitem_len(it) - it->off;
        uint32_t take = sent < left ? sent : left;
        it->off += take;
        sent -= take;
        q->bytes -= take;
        if (it->off == oitem_len(it)) {
            rbuf_unref(it->b);
            q->head = (q->head + 1) % q->cap;
            q->n--;
            if (q->urgent)
                q->urgent--;
        }
    }
    if ((c->flags & CONN_F_DRAIN) && q->bytes <= sh->cfg->outbound_limit / 4 &&
        c->state == CONN_HOME) {
        c->flags &= (uint16_t)~CONN_F_DRAIN;
        if (id_list_push(&sh->drained, &sh->ndrained, &sh->drained_cap,
                         conn_id(sh, c, conn_slot(sh, c))))
            c->flags |= CONN_F_DRAIN; /* out of memory: try at the next send */
    }
    if (q->n) {
        queue_flush(sh, c);
    } else {
        /* Idle connections hold no outbound memory (a small malloc per
         * burst is cheaper than a queue on each of a million sockets). */
        outq_free(q);
        c->oq = NULL;
        if (c->state == CONN_CLOSING)
            conn_teardown(sh, c);
    }
    conn_op_done(sh, c);
}

void conn_on_op(struct shard *sh, struct io_uring_cqe *cqe)
{
    struct conn *c = conn_of_cqe(sh, cqe);
    if (!c)
        return;
    conn_op_done(sh, c);
}

/* ---- receiving ---- */

void conn_arm_recv(struct shard *sh, struct conn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_recv_multishot(sqe, (int)c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_RECV, conn_slot(sh, c), c->gen));
    c->flags |= CONN_F_RECV;
    c->flags &= (uint16_t)~CONN_F_RECV_CANCEL;
    c->inflight++;
}

void conn_rearm_all(struct shard *sh)
{
    while (sh->rearm_head != CONN_NONE) {
        struct conn *c = &sh->conns[sh->rearm_head];
        sh->rearm_head = c->misc_next;
        c->flags &= (uint16_t)~CONN_F_IN_REARM;
        if ((c->state == CONN_EDGE || c->state == CONN_HOME) &&
            !(c->flags & (CONN_F_RECV | CONN_F_HELD)))
            conn_arm_recv(sh, c);
    }
}

void conn_on_recv(struct shard *sh, struct io_uring_cqe *cqe)
{
    struct conn *c = conn_of_cqe(sh, cqe);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        const uint8_t *data;
        int n = bufring_data(&sh->rb, cqe, &data);
        if (n > 0 && c)
            conn_input(sh, c, data, (size_t)n);
        else if (n < 0 && c)
            conn_close(sh, c, NULL); /* its stream can no longer be trusted */
        bufring_done(&sh->rb, cqe);
    }
    if (!c || more)
        return;
    c->flags &= (uint16_t) ~(CONN_F_RECV | CONN_F_RECV_CANCEL);
    if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED)) {
        /* End of stream or a socket error: the peer is gone. */
        if (c->state == CONN_EDGE || c->state == CONN_HOME)
            conn_close(sh, c, NULL);
    } else if (c->state == CONN_EDGE || c->state == CONN_HOME) {
        /* Out of buffers, or the kernel ended the multishot: arm again once
         * this iteration has given its buffers back. */
        if (!(c->flags & CONN_F_IN_REARM)) {
            c->flags |= CONN_F_IN_REARM;
            c->misc_next = sh->rearm_head;
            sh->rearm_head = conn_slot(sh, c);
        }
    }
    conn_op_done(sh, c);
}

bool conn_congested(struct shard *sh, struct conn *c)
{
    if (!c->oq || c->oq->bytes <= sh->cfg->outbound_limit / 2)
        return false;
    c->flags |= CONN_F_DRAIN;
    return true;
}

void conn_chat_closes(struct shard *sh)
{
    for (uint32_t i = 0; i < sh->ndrained; i++)
        chat_on_drained(sh->chat, sh->drained[i]);
    sh->ndrained = 0;
    /* chat_on_close may close more sessions: the list can grow meanwhile */
    for (uint32_t i = 0; i < sh->nclosed; i++)
        chat_on_close(sh->chat, sh->closed[i]);
    sh->nclosed = 0;
}
