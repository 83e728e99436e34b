/*
 * What a connection's received bytes become: TCP frames or WebSocket messages
 * (after the HTTP upgrade), decoded requests, and their dispatch — ping and
 * the edge's hello here, everything else to the chat layer once the session
 * is ready. Until then (CONN_F_HELD) frames are kept in order with their
 * length prefixes and replayed from the loop's ready phase, so that no
 * request reaches the chat layer before the user's state is loaded.
 *
 * Limits applied here: the per-connection token bucket (every request but
 * ack and ping, hello included), max_frame, and a bound on held frames past
 * which the connection stops reading until its session is ready. The chat
 * layer holds a ready session's frames the same way (conn_hold) while it has
 * too many queries in flight.
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

static size_t replay_frames(struct shard *sh, struct conn *c, const uint8_t *data, size_t len,
                            bool until_held);

static bool rate_allow(struct shard *sh, struct conn *c)
{
    uint32_t now = (uint32_t)sh->now_ms;
    uint32_t elapsed = now - c->rate_ms;
    uint64_t cap = (uint64_t)sh->cfg->rate_burst * 1000u;
    uint64_t t = c->rate_tokens + (uint64_t)elapsed * sh->cfg->rate_limit;
    c->rate_tokens = (uint32_t)(t > cap ? cap : t);
    c->rate_ms = now;
    if (c->rate_tokens < 1000u)
        return false;
    c->rate_tokens -= 1000u;
    return true;
}

#define HOLD_PAUSE (256u * 1024u)

/* Past HOLD_PAUSE held bytes, stop reading: one cancel per armed recv. */
static void hold_check_pause(struct shard *sh, struct conn *c)
{
    if (c->hold->len > HOLD_PAUSE && (c->flags & CONN_F_RECV) && !(c->flags & CONN_F_RECV_CANCEL)) {
        c->flags |= CONN_F_RECV_CANCEL;
        struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
        io_uring_prep_cancel64(sqe, ud_pack(UOP_RECV, conn_slot(sh, c), c->gen), 0);
        io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
    }
}

/* Keep a frame until the session is ready. Past HOLD_PAUSE bytes the
 * connection stops reading (its recv is cancelled) until then. */
static bool hold_frame(struct shard *sh, struct conn *c, const uint8_t *frame, uint32_t len)
{
    struct hold *h = c->hold;                /* callers make sure there is one */
    if (h->len + FRAME_HDR + len > h->cap) { // NOLINT(clang-analyzer-core.NullDereference)
        uint32_t cap = h->cap ? h->cap : 1024;
        while (cap < h->len + FRAME_HDR + len)
            cap *= 2;
        uint8_t *p = realloc(h->data, cap);
        if (!p) {
            conn_close(sh, c, NULL);
            return false;
        }
        h->data = p;
        h->cap = cap;
    }
    uint8_t *p = h->data + h->len;
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + FRAME_HDR, frame, len);
    h->len += FRAME_HDR + len;
    hold_check_pause(sh, c);
    return true;
}

/* Handle one complete frame. Returns false when the connection stops reading
 * (closing, or handing over). */
bool conn_frame(struct shard *sh, struct conn *c, const uint8_t *frame, uint32_t len)
{
    struct req req;
    const char *msg = NULL;
    c->last_rx = sh->tick;
    /* Held, or released and not replayed yet: behind the frames held before */
    if (c->hold)
        return hold_frame(sh, c, frame, len);
    sh->stats.frames_in++;
    int r = req_decode(&sh->dec, &sh->lim, frame, len, &req, &msg);
    if (r == -RP_EFRAME) {
        conn_send_error(sh, c, false, 0, CODE_BAD_FRAME, "not exactly one msgpack map");
        conn_close(sh, c, NULL);
        return false;
    }
    if (c->state == CONN_EDGE && req.op != OP_HELLO && req.op != OP_PING) {
        /* Before hello only hello and ping exist. */
        conn_send_error(sh, c, req.has_id, req.id, CODE_UNAUTHORIZED, "hello first");
        return true;
    }
    /* PROTOCOL §8: every request but ack and ping spends a token, hellos and
     * malformed requests included (that is what slows a token brute force).
     * Before hello, anything else is refused above without effect. */
    if (req.op != OP_ACK && req.op != OP_PING && !rate_allow(sh, c)) {
        sh->stats.rate_limited++;
        conn_send_error(sh, c, req.has_id, req.id, CODE_RATE_LIMITED, "slow down");
        return true;
    }
    if (r) {
        if (c->state == CONN_EDGE)
            sh->stats.hello_bad++;
        conn_send_error(sh, c, req.has_id, req.id, code_from_err(r), msg);
        return true;
    }
    if (req.op == OP_PING) {
        struct buf b;
        buf_init(&b);
        if (enc_pong(&b, req.id) == 0) {
            struct rbuf *rb = rbuf_copy(b.data, (uint32_t)b.len);
            if (rb) {
                conn_send(sh, c, rb);
                rbuf_unref(rb);
            }
        }
        buf_deinit(&b);
        return c->state != CONN_CLOSING;
    }
    if (c->state == CONN_EDGE) {
        if (req.op != OP_HELLO) {
            conn_send_error(sh, c, req.has_id, req.id, CODE_UNAUTHORIZED, "hello first");
            return true;
        }
        hello_on_frame(sh, c, &req);
        return c->state == CONN_EDGE || c->state == CONN_HOME;
    }
    if (req.op == OP_HELLO) {
        conn_send_error(sh, c, req.has_id, req.id, CODE_BAD_REQUEST, "already hello'd");
        return true;
    }
    chat_on_request(sh->chat, conn_id(sh, c, conn_slot(sh, c)), &req);
    return c->state == CONN_HOME;
}

/* ---- WebSocket clients ---- */

static void ws_send_output(struct shard *sh, struct conn *c)
{
    size_t n;
    const uint8_t *out = ws_take_output(c->wsx->ws, &n);
    if (out) {
        /* wslay answered a complete control frame (a ping, most often):
         * that is activity, like any complete frame */
        c->last_rx = sh->tick;
        conn_send_control(sh, c, out, n);
    }
}

static bool on_ws_msg(void *arg, const uint8_t *msg, size_t len)
{
    struct conn_ws *wsx = arg;
    struct shard *sh = wsx->sh;
    struct conn *c = &sh->conns[wsx->slot];
    if (c->state == CONN_HANDOFF) {
        if (hello_buffer_frame(sh, c, msg, len))
            return true;
        conn_close(sh, c, NULL);
        return false;
    }
    if (c->state != CONN_EDGE && c->state != CONN_HOME)
        return false;
    /* Answer control frames that came before this message first. */
    ws_send_output(sh, c);
    if (len > sh->cfg->max_frame) {
        conn_send_error(sh, c, false, 0, CODE_TOO_LARGE, "frame over max_frame");
        conn_close(sh, c, NULL);
        return false;
    }
    if (!conn_frame(sh, c, msg, (uint32_t)len))
        return c->state == CONN_HANDOFF;
    return true;
}

static void ws_input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    struct conn_ws *wsx = c->wsx;
    if (!wsx->upgraded) {
        if (buf_append(&wsx->hs, data, len)) {
            conn_close(sh, c, NULL);
            return;
        }
        struct buf reply;
        buf_init(&reply);
        int r = ws_handshake(wsx->hs.data, wsx->hs.len, &reply);
        if (reply.len)
            conn_send_raw(sh, c, reply.data, reply.len);
        buf_deinit(&reply);
        if (r == 0)
            return;
        if (r < 0) {
            conn_close(sh, c, NULL);
            return;
        }
        wsx->ws = ws_new(sh->cfg->max_frame, on_ws_msg, wsx);
        if (!wsx->ws) {
            conn_close(sh, c, NULL);
            return;
        }
        wsx->upgraded = true;
        /* Frames may follow the request in the same read. */
        struct buf rest = wsx->hs;
        buf_init(&wsx->hs);
        if (rest.len > (size_t)r)
            ws_input(sh, c, rest.data + r, rest.len - (size_t)r);
        buf_deinit(&rest);
        return;
    }
    int r = ws_feed(wsx->ws, data, len);
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return;
    if (!(c->flags & CONN_F_HANDED))
        ws_send_output(sh, c);
    if (r)
        conn_close(sh, c, NULL);
}

static void input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len);

void conn_replay(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    if (!c->wsx) {
        input(sh, c, data, len); /* counted where they were received */
        return;
    }
    /* A WebSocket client's leftovers are whole frames with a length prefix. */
    replay_frames(sh, c, data, len, false);
}

static void tcp_input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len);

/* PROTOCOL §1: a connection whose first four bytes are "GET " is HTTP; any
 * other first bytes are a length prefix. Until four bytes have come, those
 * that did wait in the frame decoder's header; as long as they spell the
 * start of "GET " nothing is decided. Returns false when c was closed. */
static bool probe(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    static const char get[FRAME_HDR] = {'G', 'E', 'T', ' '};
    const uint8_t *held;
    size_t nheld = frame_dec_pending(&c->dec, &held);
    size_t n = len < FRAME_HDR - nheld ? len : FRAME_HDR - nheld;
    if ((nheld && memcmp(held, get, nheld)) || memcmp(data, get + nheld, n)) {
        c->flags |= CONN_F_PROBED; /* a length prefix: the decoder has its first bytes */
        return true;
    }
    if (nheld + n < FRAME_HDR)
        return true; /* still a prefix of "GET ": wait for more */
    c->flags |= CONN_F_PROBED;
    uint32_t max_frame = c->dec.max_frame;
    frame_dec_deinit(&c->dec);
    frame_dec_init(&c->dec, max_frame);
    c->wsx = calloc(1, sizeof(*c->wsx));
    if (!c->wsx) {
        conn_close(sh, c, NULL);
        return false;
    }
    c->wsx->sh = sh;
    c->wsx->slot = conn_slot(sh, c);
    buf_init(&c->wsx->hs);
    /* the bytes held were "GET " up to where this read starts */
    if (buf_append(&c->wsx->hs, get, nheld)) {
        conn_close(sh, c, NULL);
        return false;
    }
    return true;
}

/* Bytes of the connection, counted already. */
static void input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    if (!(c->flags & CONN_F_PROBED) && len && !probe(sh, c, data, len))
        return;
    if (c->wsx) {
        if (c->state == CONN_EDGE || c->state == CONN_HOME || c->state == CONN_HANDOFF)
            ws_input(sh, c, data, len);
        return;
    }
    tcp_input(sh, c, data, len);
    /* A frame that arrived in pieces was assembled in a buffer the decoder
     * frees only at its next call, which an idle connection may never make:
     * the frame is dispatched (or copied) by now, so release it here. */
    if (c->dec.done) {
        static const uint8_t none[1];
        const uint8_t *frame;
        uint32_t flen;
        frame_next(&c->dec, none, 0, &frame, &flen);
    }
}

void conn_input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    sh->stats.bytes_in += len;
    input(sh, c, data, len);
}

/* Length-prefixed frames of a TCP client. */
static void tcp_input(struct shard *sh, struct conn *c, const uint8_t *data, size_t len)
{
    while (len) {
        if (c->state == CONN_HANDOFF) {
            if (!hello_buffer(sh, c, data, len))
                conn_close(sh, c, NULL);
            return;
        }
        if (c->state != CONN_EDGE && c->state != CONN_HOME)
            return;
        const uint8_t *frame;
        uint32_t flen;
        int n = frame_next(&c->dec, data, len, &frame, &flen);
        if (n < 0) {
            int code = n == -RP_ETOOLARGE ? CODE_TOO_LARGE : CODE_BAD_FRAME;
            conn_send_error(sh, c, false, 0, code,
                            n == -RP_ETOOLARGE ? "frame over max_frame" : "empty frame");
            conn_close(sh, c, NULL);
            return;
        }
        data += n;
        len -= (size_t)n;
        if (frame && !conn_frame(sh, c, frame, flen) && c->state != CONN_HANDOFF)
            return;
    }
}

void conn_ready(struct shard *sh, struct conn *c)
{
    if (!(c->flags & CONN_F_HELD))
        return;
    c->flags &= (uint16_t)~CONN_F_HELD;
    if (c->flags & CONN_F_READY_LISTED)
        return; /* held again before its replay: still listed */
    c->flags |= CONN_F_READY_LISTED;
    c->hold->next = sh->ready_head;
    sh->ready_head = conn_slot(sh, c);
}

void conn_hold(struct shard *sh, struct conn *c)
{
    if (c->state != CONN_HOME || (c->flags & CONN_F_HELD))
        return;
    if (!c->hold) {
        c->hold = calloc(1, sizeof(*c->hold));
        if (!c->hold) {
            conn_close(sh, c, NULL);
            return;
        }
    }
    c->flags |= CONN_F_HELD;
}

/* Run the length-prefixed frames of data while c stays at home, and with
 * until_held until it is held again (a frame that reaches a session's query
 * bound); returns the bytes run. */
static size_t replay_frames(struct shard *sh, struct conn *c, const uint8_t *data, size_t len,
                            bool until_held)
{
    size_t off = 0;
    while (len - off >= FRAME_HDR && c->state == CONN_HOME && !(until_held && c->hold)) {
        const uint8_t *d = data + off;
        uint32_t n = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (n > len - off - FRAME_HDR)
            break;
        conn_frame(sh, c, d + FRAME_HDR, n);
        off += FRAME_HDR + n;
    }
    return off;
}

void conn_ready_all(struct shard *sh)
{
    while (sh->ready_head != CONN_NONE) {
        struct conn *c = &sh->conns[sh->ready_head];
        struct hold *h = c->hold;
        sh->ready_head = h->next;
        c->flags &= (uint16_t)~CONN_F_READY_LISTED;
        if (c->flags & CONN_F_HELD)
            continue; /* held again: its frames wait for the next conn_ready */
        c->hold = NULL;
        if (c->state == CONN_HOME) {
            size_t off = replay_frames(sh, c, h->data, h->len, true);
            if (c->state == CONN_HOME && c->hold && off < h->len && !c->hold->len) {
                /* Held again (the new hold is empty: the replay stopped at
                 * the frame that made it): the rest moves over in one piece,
                 * not frame by frame, into that hold, which may be listed
                 * already (held and released by the same frame). */
                memmove(h->data, h->data + off, h->len - off);
                free(c->hold->data);
                c->hold->data = h->data;
                c->hold->len = h->len - (uint32_t)off;
                c->hold->cap = h->cap;
                h->data = NULL;
                hold_check_pause(sh, c);
            } else if (off < h->len) {
                replay_frames(sh, c, h->data + off, h->len - off, false);
            }
            /* held again during the replay: read on only below the bound */
            if (c->state == CONN_HOME && !(c->flags & CONN_F_RECV) &&
                (!(c->flags & CONN_F_HELD) || (c->hold && c->hold->len <= HOLD_PAUSE)))
                conn_arm_recv(sh, c);
        }
        conn_hold_free(h);
    }
}
