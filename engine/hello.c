/*
 * The edge role: a connection's first `hello` is verified on the shard that
 * accepted it, then the socket moves to the user's home shard so that every
 * session of a user lives on one core.
 *
 * Handoff sequence (edge shard E, home shard H):
 *   1. E verifies the JWT, stops reading (cancels its multishot recv) and
 *      keeps any bytes that arrived after the hello.
 *   2. When nothing of the connection is in flight on E, E sends the direct
 *      descriptor to H's ring with MSG_RING/IORING_MSG_SEND_FD; the kernel
 *      picks a free slot in H's table and reports it in E's completion.
 *   3. E queues an ADOPT message (slot, session, leftover bytes) on its ring to
 *      H and closes its own descriptor; the socket stays open through H's.
 *   4. H adopts the slot as a home connection, answers the hello through the
 *      chat layer, and replays the leftover bytes before anything newer.
 * The descriptor reaches H's table before H can see the ADOPT message, since
 * E sends that only after step 2 completed.
 */
#include "base/err.h"
#include "base/log.h"
#include "engine/conn.h"
#include "engine/server.h"
#include "engine/shard.h"
#include "engine/uring.h"
#include "engine/xkind.h"
#include "protocol/enc.h"
#include "protocol/jwt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * What a connection sent right behind its hello is kept for its home shard,
 * all of it, as a connection held on its home shard keeps it: the receive is
 * cancelled as the handoff starts, so what arrives is what the kernel had
 * taken in by then (a few socket buffers). The bound only stops a runaway.
 */
#define LEFTOVER_MAX (16u << 20)

static void handoff_push(struct shard *sh, struct conn *c)
{
    c->ho->next = sh->handoff_head;
    sh->handoff_head = conn_slot(sh, c);
}

static void start_session(struct shard *sh, struct conn *c, struct strv user, struct strv device,
                          bool resume, uint32_t hello_id)
{
    c->hold = calloc(1, sizeof(*c->hold));
    if (!c->hold) {
        conn_send_error(sh, c, true, hello_id, CODE_UNAVAILABLE, "out of memory");
        conn_close(sh, c, NULL);
        return;
    }
    c->state = CONN_HOME;
    c->flags |= CONN_F_CHAT | CONN_F_HELD;
    c->last_rx = sh->tick;
    conn_timer_reset(sh, c);
    sh->stats.hello_ok++;
    chat_on_hello(sh->chat, conn_id(sh, c, conn_slot(sh, c)), user, device, resume, hello_id);
}

int hello_selftest(const struct config *cfg, uint64_t now_s)
{
    struct buf tok;
    struct jwt_claims claims;
    buf_init(&tok);
    const uint8_t *key = (const uint8_t *)cfg->secret;
    size_t keylen = strlen(cfg->secret);
    int r = jwt_sign_hs256("selftest", 8, now_s + 60, key, keylen, &tok);
    if (r == 0)
        r = buf_failed(&tok)
                ? -ENOMEM
                : jwt_verify_hs256((const char *)tok.data, tok.len, key, keylen, now_s, &claims);
    if (r == 0 && (claims.sub_len != 8 || memcmp(claims.sub, "selftest", 8) != 0))
        r = -RP_EAUTH;
    buf_deinit(&tok);
    return r;
}

void hello_on_frame(struct shard *sh, struct conn *c, const struct req *req)
{
    struct jwt_claims claims;
    const struct config *cfg = sh->cfg;
    int r = jwt_verify_hs256(req->token.p, req->token.len, (const uint8_t *)cfg->secret,
                             strlen(cfg->secret), sh->now_ms / 1000u, &claims);
    if (r) {
        sh->stats.hello_unauthorized++;
        conn_send_error(sh, c, req->has_id, req->id, CODE_UNAUTHORIZED,
                        r == -RP_EEXPIRED ? "token expired" : "invalid token");
        conn_close(sh, c, NULL);
        return;
    }
    struct strv user = {claims.sub, claims.sub_len};
    unsigned home = shard_of(sh->srv, claims.sub, claims.sub_len);
    if (home == sh->id) {
        start_session(sh, c, user, req->device, req->resume, req->id);
        return;
    }
    struct handoff *ho = calloc(1, sizeof(*ho));
    if (!ho) {
        conn_send_error(sh, c, req->has_id, req->id, CODE_UNAVAILABLE, "out of memory");
        conn_close(sh, c, NULL);
        return;
    }
    ho->step = HO_WAIT_RECV;
    ho->home = (uint8_t)home;
    ho->hello_id = req->id;
    ho->resume = req->resume;
    ho->user_len = (uint8_t)claims.sub_len;
    memcpy(ho->user, claims.sub, claims.sub_len);
    ho->device_len = (uint8_t)req->device.len;
    memcpy(ho->device, req->device.p, req->device.len);
    ho->target_slot = -1;
    c->ho = ho;
    c->state = CONN_HANDOFF;
    if (c->flags & CONN_F_RECV) {
        struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
        io_uring_prep_cancel64(sqe, ud_pack(UOP_RECV, conn_slot(sh, c), c->gen), 0);
        io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
    }
    handoff_push(sh, c);
}

bool hello_buffer_frame(struct shard *sh, struct conn *c, const uint8_t *msg, size_t len)
{
    uint8_t hdr[FRAME_HDR] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                              (uint8_t)len};
    return hello_buffer(sh, c, hdr, sizeof(hdr)) && hello_buffer(sh, c, msg, len);
}

bool hello_buffer(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    (void)sh;
    struct handoff *ho = c->ho;
    if (ho->leftover_len + len > LEFTOVER_MAX)
        return false;
    if (ho->leftover_len + len > ho->leftover_cap) {
        uint32_t cap = ho->leftover_cap ? ho->leftover_cap : 512;
        while (cap < ho->leftover_len + len)
            cap *= 2;
        uint8_t *p = realloc(ho->leftover, cap);
        if (!p)
            return false;
        ho->leftover = p;
        ho->leftover_cap = cap;
    }
    memcpy(ho->leftover + ho->leftover_len, data, len);
    ho->leftover_len += (uint32_t)len;
    return true;
}

static bool send_adopt(struct shard *sh, struct conn *c)
{
    struct xmsg m = {.kind = XK_ADOPT, .ptr = c->ho};
    c->ho->wsx = c->wsx;
    if (shard_xsend(sh, c->ho->home, &m)) {
        c->ho->wsx = NULL;
        return false;
    }
    c->ho = NULL;
    c->wsx = NULL;
    sh->stats.handoffs_out++;
    conn_close(sh, c, NULL); /* HANDED: closes our descriptor only */
    return true;
}

void hello_handoffs(struct shard *sh)
{
    uint32_t idx = sh->handoff_head;
    sh->handoff_head = CONN_NONE;
    while (idx != CONN_NONE) {
        struct conn *c = &sh->conns[idx];
        uint32_t next = c->ho ? c->ho->next : CONN_NONE;
        if (c->state != CONN_HANDOFF || !c->ho) {
            idx = next;
            continue;
        }
        struct handoff *ho = c->ho;
        if (ho->step == HO_WAIT_RECV && !c->inflight && !(c->oq && c->oq->n)) {
            /* nothing of ours is in flight or queued (a pong goes out
             * first, whole): the home's frames follow ours on the socket */
            struct shard *home = &sh->srv->shards[ho->home];
            struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
            uring_prep_send_fd(sqe, home->ring_fd, c->fd, ud_pack(UOP_HANDOFF, idx, c->gen));
            c->inflight++;
            c->flags |= CONN_F_HANDING;
            ho->step = HO_SENDING_FD;
        } else if (ho->step == HO_ADOPT_PENDING) {
            if (!send_adopt(sh, c))
                handoff_push(sh, c);
        } else if (ho->step == HO_WAIT_RECV) {
            handoff_push(sh, c);
        }
        idx = next;
    }
}

void hello_on_handoff(struct shard *sh, struct io_uring_cqe *cqe)
{
    uint32_t slot = ud_slot(cqe->user_data);
    if (slot >= sh->nconns)
        return;
    struct conn *c = &sh->conns[slot];
    if (c->state == CONN_FREE || c->gen != ud_gen(cqe->user_data))
        return;
    c->inflight--;
    if (c->state != CONN_HANDOFF || !c->ho) {
        /* Closed meanwhile (shutdown): finish the close it started. */
        if (cqe->res >= 0)
            c->flags |= CONN_F_HANDED;
        c->inflight++;
        conn_op_done(sh, c);
        return;
    }
    if (cqe->res < 0) {
        log_warn("handoff_failed", "slot=%u home=%u err=%s", slot, c->ho->home, err_str(cqe->res));
        c->flags &= (uint16_t)~CONN_F_HANDING;
        c->state = CONN_EDGE;
        conn_send_error(sh, c, true, c->ho->hello_id, CODE_UNAVAILABLE, "home shard is full");
        conn_close(sh, c, NULL);
        return;
    }
    c->ho->target_slot = cqe->res;
    c->flags |= CONN_F_HANDED;
    if (!send_adopt(sh, c)) {
        c->ho->step = HO_ADOPT_PENDING;
        handoff_push(sh, c);
    }
}

void conn_adopt(struct shard *sh, struct handoff *ho)
{
    struct conn *c = conn_new(sh, (uint32_t)ho->target_slot, CONN_HOME);
    if (!c) {
        log_warn("adopt_full", "slot=%d", ho->target_slot);
        struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
        io_uring_prep_close_direct(sqe, (unsigned)ho->target_slot);
        io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
        handoff_free(ho);
        return;
    }
    sh->stats.handoffs_in++;
    c->flags |= CONN_F_PROBED;
    if (ho->wsx) {
        c->wsx = ho->wsx;
        ho->wsx = NULL;
        c->wsx->sh = sh;
        c->wsx->slot = conn_slot(sh, c);
    }
    conn_arm_recv(sh, c);
    struct strv user = {ho->user, ho->user_len}, device = {ho->device, ho->device_len};
    start_session(sh, c, user, device, ho->resume, ho->hello_id);
    if (ho->leftover_len && c->state == CONN_HOME)
        conn_replay(sh, c, ho->leftover, ho->leftover_len);
    free(ho->leftover);
    free(ho);
}
