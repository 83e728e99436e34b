/*
 * Fuzz target for the WebSocket layer (protocol/ws.h). The input is
 * [mode][max_msg/8][k-1][k fragment sizes][bytes]; mode bit 0 picks what the
 * bytes are.
 *
 * Handshake (odd mode): ws_handshake is called on every growing prefix the
 * fragments make, as bytes would arrive, until it answers. A 0 leaves the
 * reply empty; a positive count is at most the bytes given, comes with a
 * `101` reply and is what the whole input answers too; an error comes with a
 * 4xx reply and is one of the documented codes.
 *
 * Framing (even mode): a ws_new context is fed the bytes once whole and once
 * in fragments (cycled, each fragment in its own exact-size allocation). Both
 * runs deliver the same messages, each at most max_msg bytes, or, when one
 * closed on a bad frame the other has not seen whole yet, a prefix of them;
 * a run closes if and only if it sends a close frame. Nothing comes out before input
 * arrives, and what comes out is a sequence of unmasked control frames
 * (pong, close) with nothing after a close.
 */
#include "base/buf.h"
#include "base/err.h"
#include "protocol/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct run {
    struct buf msgs;  /* [be32 len][bytes] per message */
    struct buf out;   /* every byte ws_take_output handed back */
    struct buf close; /* the close frame in out */
    uint32_t max_msg;
    int err;
};

static bool on_msg(void *arg, const uint8_t *msg, size_t len)
{
    struct run *r = arg;
    if (len > r->max_msg)
        abort();
    buf_put_be32(&r->msgs, (uint32_t)len);
    buf_append(&r->msgs, msg, len);
    return true;
}

static void take(struct ws *ws, struct run *r)
{
    size_t n;
    const uint8_t *p = ws_take_output(ws, &n);
    if ((p == NULL) != (n == 0))
        abort();
    if (n)
        buf_append(&r->out, p, n);
}

/* Output must parse as whole server control frames; nothing may follow a
 * close. The close frame, if any, is copied to close. */
static void check_output(const struct buf *out, struct buf *close)
{
    size_t off = 0;
    bool closed = false;
    while (off < out->len) {
        if (closed || out->len - off < 2)
            abort();
        uint8_t b0 = out->data[off], b1 = out->data[off + 1];
        unsigned opcode = b0 & 0x0f;
        size_t len = b1 & 0x7f;
        if (!(b0 & 0x80) || (b0 & 0x70) || (b1 & 0x80) || len > 125)
            abort(); /* not final, reserved bits, masked, or a long control frame */
        if (opcode != 0x8 && opcode != 0xa)
            abort();
        if (out->len - off - 2 < len)
            abort();
        if (opcode == 0x8) {
            closed = true;
            if (len == 1)
                abort(); /* a close body is empty or a status code and a reason */
            buf_append(close, out->data + off, 2 + len);
        }
        off += 2 + len;
    }
}

static void run_init(struct run *r, uint32_t max_msg)
{
    buf_init(&r->msgs);
    buf_init(&r->out);
    buf_init(&r->close);
    r->max_msg = max_msg;
    r->err = 0;
}

static void run_deinit(struct run *r)
{
    buf_deinit(&r->msgs);
    buf_deinit(&r->out);
    buf_deinit(&r->close);
}

/* Feeds bytes in pieces of the given sizes (sizes NULL: whole) until an error. */
static void frames(struct run *r, const uint8_t *sizes, size_t k, const uint8_t *p, size_t len)
{
    struct ws *ws = ws_new(r->max_msg, on_msg, r);
    if (!ws)
        abort();
    size_t n0;
    if (ws_take_output(ws, &n0) != NULL || n0 != 0)
        abort(); /* no output before any input */
    size_t off = 0, i = 0;
    while (off < len && !r->err) {
        size_t n = sizes ? (size_t)sizes[i++ % k] + 1 : len;
        if (n > len - off)
            n = len - off;
        uint8_t *piece = malloc(n);
        memcpy(piece, p + off, n);
        r->err = ws_feed(ws, piece, n);
        free(piece);
        off += n;
        take(ws, r);
        if (r->err && r->err != -RP_ECLOSED)
            abort();
        if (!r->err && ws_closing(ws))
            abort(); /* closing without saying so */
    }
    ws_free(ws);
    check_output(&r->out, &r->close);
}

static void framing(uint32_t max_msg, const uint8_t *sizes, size_t k, const uint8_t *p, size_t len)
{
    struct run whole, frag;
    run_init(&whole, max_msg);
    run_init(&frag, max_msg);
    frames(&whole, NULL, 0, p, len);
    frames(&frag, sizes, k, p, len);
    /* With the same bytes, both runs deliver the same messages and end in the
     * same state, except that wslay may see a bad frame sooner when more of it
     * has arrived (it checks a text payload's UTF-8 as the bytes come): then
     * the run that closed delivered a prefix of the other's messages. */
    const struct run *shorter = whole.msgs.len <= frag.msgs.len ? &whole : &frag;
    const struct run *longer = shorter == &whole ? &frag : &whole;
    if (shorter->msgs.len && memcmp(shorter->msgs.data, longer->msgs.data, shorter->msgs.len) != 0)
        abort();
    if (whole.msgs.len != frag.msgs.len && !shorter->err)
        abort(); /* fewer messages without a reason */
    /* a run closes if and only if it sent a close frame (wslay's status may
     * differ for the same bad frame, 1002 or 1007, and it may drop a pong
     * when a close follows in the same feed, so bytes are not compared) */
    if ((whole.err != 0) != (whole.close.len != 0) || (frag.err != 0) != (frag.close.len != 0))
        abort();
    run_deinit(&whole);
    run_deinit(&frag);
}

static bool starts(const struct buf *b, const char *s)
{
    size_t n = strlen(s);
    return b->len >= n && memcmp(b->data, s, n) == 0;
}

static void check_answer(int r, size_t given, const struct buf *reply)
{
    if (r == 0) {
        if (reply->len)
            abort();
    } else if (r > 0) {
        if ((size_t)r > given || !starts(reply, "HTTP/1.1 101 "))
            abort();
    } else {
        if (r != -RP_ETOOLARGE && r != -ENOENT && r != -RP_EREQUEST && r != -ENOMEM)
            abort();
        if (!starts(reply, "HTTP/1.1 4"))
            abort();
    }
}

static void handshake(const uint8_t *sizes, size_t k, const uint8_t *p, size_t len)
{
    struct buf reply, whole;
    buf_init(&reply);
    buf_init(&whole);
    size_t have = 0, i = 0;
    int r = 0;
    while (have < len && r == 0) {
        have += (size_t)sizes[i++ % k] + 1;
        if (have > len)
            have = len;
        uint8_t *copy = malloc(have);
        memcpy(copy, p, have);
        buf_reset(&reply);
        r = ws_handshake(copy, have, &reply);
        free(copy);
        check_answer(r, have, &reply);
    }
    if (len && r > 0) {
        /* more bytes after a complete request change nothing */
        uint8_t *copy = malloc(len);
        memcpy(copy, p, len);
        int r2 = ws_handshake(copy, len, &whole);
        free(copy);
        if (r2 != r || whole.len != reply.len || memcmp(whole.data, reply.data, reply.len) != 0)
            abort();
    }
    buf_deinit(&reply);
    buf_deinit(&whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t k = data[2] % 8 + 1;
    if (size < 3 + k)
        return 0;
    const uint8_t *sizes = data + 3;
    const uint8_t *p = data + 3 + k;
    size_t len = size - 3 - k;
    if (data[0] & 1)
        handshake(sizes, k, p, len);
    else
        framing((uint32_t)data[1] * 8, sizes, k, p, len);
    return 0;
}
