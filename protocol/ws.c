/*
 * WebSocket handshake (http-parser, OpenSSL SHA-1) and server framing (wslay).
 * See ws.h for why outgoing data frames bypass wslay.
 */
#include "protocol/ws.h"

#include "base/err.h"

#include <errno.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

/* ---- handshake ---- */

enum hdr { H_NONE, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION, H_HOST, H__COUNT };

/* Every part of the request fits its buffer: the whole head is at most
 * WS_HANDSHAKE_MAX bytes. */
struct hs {
    char url[WS_HANDSHAKE_MAX + 1];
    size_t url_len;
    enum hdr cur;
    char val[H__COUNT][WS_HANDSHAKE_MAX + 1];
    size_t val_len[H__COUNT];
    bool seen[H__COUNT];
    bool done;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct hs *hs = p->data;
    memcpy(hs->url + hs->url_len, at, len);
    hs->url_len += len;
    hs->url[hs->url_len] = 0;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    /* http-parser may split a field name across calls only when the input is
     * split; we always parse the whole request from its start, so a field
     * arrives in one piece. */
    struct hs *hs = p->data;
    static const char *const names[H__COUNT] = {
        [H_UPGRADE] = "upgrade",
        [H_CONNECTION] = "connection",
        [H_KEY] = "sec-websocket-key",
        [H_VERSION] = "sec-websocket-version",
        [H_HOST] = "host",
    };
    hs->cur = H_NONE;
    for (int i = 1; i < H__COUNT; i++)
        if (strlen(names[i]) == len && !strncasecmp(names[i], at, len))
            hs->cur = (enum hdr)i;
    return 0;
}

/* A header given on several lines is their values joined by commas (RFC
 * 7230 §3.2.2): a list header reads the same, a single-valued one becomes
 * invalid. */
static int on_value(http_parser *p, const char *at, size_t len)
{
    struct hs *hs = p->data;
    if (hs->cur == H_NONE)
        return 0;
    char *v = hs->val[hs->cur];
    size_t *vl = &hs->val_len[hs->cur];
    if (hs->seen[hs->cur])
        v[(*vl)++] = ',';
    hs->seen[hs->cur] = true;
    memcpy(v + *vl, at, len);
    *vl += len;
    v[*vl] = 0;
    hs->cur = H_NONE; /* the whole value comes in one call (see on_field) */
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    ((struct hs *)p->data)->done = true;
    return 1; /* stop here: whatever follows is WebSocket frames */
}

/* Is `token` one of the comma-separated tokens of v (case-insensitive)? */
static bool has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *end = v;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - v) == tl && !strncasecmp(v, token, tl))
            return true;
        v = end;
    }
    return false;
}

static int reply_status(struct buf *reply, int err, const char *status, const char *extra)
{
    char text[192];
    int n =
        snprintf(text, sizeof(text),
                 "HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n", status, extra);
    if (buf_append(reply, text, (size_t)n))
        return -ENOMEM;
    return err;
}

void ws_accept_key(const char *key, size_t keylen, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char in[128 + sizeof(guid)];
    if (keylen > 128)
        keylen = 128;
    memcpy(in, key, keylen);
    memcpy(in + keylen, guid, sizeof(guid) - 1);
    EVP_Digest(in, keylen + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* Is key the base64 of 16 bytes (RFC 6455 §4.2.1: 22 characters and "==")? */
static bool key_valid(const char *key, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!key[i] || !strchr(b64, key[i]))
            return false;
    return true;
}

/* The request target's path: origin form "/ws?q" or absolute form
 * "http://host/ws?q" (RFC 7230 §5.3). */
static bool path_is_ws(const char *url, size_t len)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) || !(u.field_set & (1 << UF_PATH)))
        return false;
    return u.field_data[UF_PATH].len == 3 && !memcmp(url + u.field_data[UF_PATH].off, "/ws", 3);
}

static int parse_upgrade(struct hs *hs, const uint8_t *p, size_t req_len, struct buf *reply)
{
    hs->url_len = 0;
    hs->cur = H_NONE;
    hs->done = false;
    for (int i = 0; i < H__COUNT; i++) {
        hs->val[i][0] = 0;
        hs->val_len[i] = 0;
        hs->seen[i] = false;
    }
    http_parser parser;
    http_parser_settings settings;
    http_parser_init(&parser, HTTP_REQUEST);
    http_parser_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_headers_complete = on_headers_complete;
    parser.data = hs;
    http_parser_execute(&parser, &settings, (const char *)p, req_len);
    /* RFC 6455 §4.2.1: a GET of HTTP/1.1 or later, with a Host */
    if (!hs->done || parser.method != HTTP_GET || parser.http_major < 1 ||
        (parser.http_major == 1 && parser.http_minor < 1) || !hs->seen[H_HOST] ||
        strchr(hs->val[H_HOST], ',')) /* one Host (RFC 7230 §5.4) */
        return reply_status(reply, -RP_EREQUEST, "400 Bad Request", "");
    if (!path_is_ws(hs->url, hs->url_len))
        return reply_status(reply, -ENOENT, "404 Not Found", "");
    if (!has_token(hs->val[H_UPGRADE], "websocket") ||
        !has_token(hs->val[H_CONNECTION], "upgrade") ||
        !key_valid(hs->val[H_KEY], hs->val_len[H_KEY]) || !hs->seen[H_VERSION])
        return reply_status(reply, -RP_EREQUEST, "400 Bad Request", "");
    if (strcmp(hs->val[H_VERSION], "13")) /* §4.4: name the version understood */
        return reply_status(reply, -RP_EREQUEST, "426 Upgrade Required",
                            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");

    char accept[29];
    ws_accept_key(hs->val[H_KEY], hs->val_len[H_KEY], accept);
    char text[256];
    int n = snprintf(text, sizeof(text),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (buf_append(reply, text, (size_t)n))
        return -ENOMEM;
    return (int)req_len;
}

int ws_handshake(const uint8_t *p, size_t len, struct buf *reply)
{
    /* the head ends at its first empty line; lines end in CRLF, or in a bare
     * LF, which RFC 7230 §3.5 lets a server accept */
    const uint8_t *end = NULL;
    for (size_t i = 1; i < len && !end; i++)
        if (p[i] == '\n' && (p[i - 1] == '\n' || (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n')))
            end = p + i + 1;
    if (!end)
        return len >= WS_HANDSHAKE_MAX
                   ? reply_status(reply, -RP_ETOOLARGE, "431 Request Header Fields Too Large", "")
                   : 0;
    size_t req_len = (size_t)(end - p);
    if (req_len > WS_HANDSHAKE_MAX)
        return reply_status(reply, -RP_ETOOLARGE, "431 Request Header Fields Too Large", "");
    struct hs *hs = malloc(sizeof(*hs)); /* ~50 KB: not on a shard's stack */
    if (!hs)
        return -ENOMEM;
    int rc = parse_upgrade(hs, p, req_len, reply);
    free(hs);
    return rc;
}

/* ---- framing ---- */

struct ws {
    wslay_event_context_ptr ctx;
    ws_msg_fn fn;
    void *arg;
    const uint8_t *in;
    size_t in_len;
    bool stop;  /* the callback asked to stop: keep the rest unread */
    bool fatal; /* a text message, or the callback failed */
    bool proto; /* a close frame with a 1-byte body */
    struct buf out;
    struct buf taken;
};

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct ws *ws = user;
    if (!ws->in_len || ws->stop) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    struct ws *ws = user;
    if (buf_append(&ws->out, data, len)) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    struct ws *ws = user;
    if (arg->opcode == WSLAY_BINARY_FRAME) {
        if (!ws->stop && !ws->fatal && !ws->fn(ws->arg, arg->msg, arg->msg_length))
            ws->stop = true;
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1) {
        /* RFC 6455 §5.5.1: a close body is empty or starts with a 2-byte
         * status; wslay echoes this one with a close of its own, bare */
        ws->proto = true;
    }
}

/* A text message is refused with 1003 at its first frame, before wslay
 * reads (and checks the UTF-8 of) its payload: bytes that are not UTF-8 would
 * get 1007 from wslay instead of the contract's 1003. */
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    struct ws *ws = user;
    if (arg->opcode == WSLAY_TEXT_FRAME && !ws->fatal) {
        ws->fatal = true;
        ws->stop = true; /* read nothing more: the close is all that is left */
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, NULL, 0);
    }
}

struct ws *ws_new(uint32_t max_msg, ws_msg_fn fn, void *arg)
{
    static const struct wslay_event_callbacks callbacks = {
        .recv_callback = on_recv,
        .send_callback = on_send,
        .on_frame_recv_start_callback = on_frame_start,
        .on_msg_recv_callback = on_msg,
    };
    struct ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws)) {
        free(ws);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg);
    ws->fn = fn;
    ws->arg = arg;
    buf_init(&ws->out);
    buf_init(&ws->taken);
    return ws;
}

void ws_free(struct ws *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ctx);
    buf_deinit(&ws->out);
    buf_deinit(&ws->taken);
    free(ws);
}

void ws_set_handler(struct ws *ws, ws_msg_fn fn, void *arg)
{
    ws->fn = fn;
    ws->arg = arg;
}

static int flush_control(struct ws *ws)
{
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx))
        return -ENOMEM;
    return 0;
}

/*
 * A frame wslay's parser refuses (a control frame over 125 bytes or
 * fragmented, a 64-bit length with its top bit set, a length not in its
 * shortest form) makes wslay_event_recv fail with WSLAY_ERR_CALLBACK_FAILURE
 * after queueing a close with no status code, as does a close with a 1-byte
 * body. RFC 6455 §7.4.1 has a status for both, 1002 (protocol error). Nothing
 * follows a close, so once flushed it is the last two bytes of out, 0x88 0x00
 * (final, opcode 8, unmasked, empty): write the status into it. 0 or -ENOMEM.
 */
static int close_protocol_error(struct ws *ws)
{
    static const uint8_t bare[2] = {0x88, 0x00};
    static const uint8_t status[4] = {0x88, 0x02, WSLAY_CODE_PROTOCOL_ERROR >> 8,
                                      WSLAY_CODE_PROTOCOL_ERROR & 0xff};
    struct buf *o = &ws->out;
    if (o->len < sizeof(bare) || memcmp(o->data + o->len - sizeof(bare), bare, sizeof(bare)))
        return 0;
    if (buf_reserve(o, sizeof(status) - sizeof(bare)))
        return -ENOMEM;
    o->len -= sizeof(bare);
    return buf_append(o, status, sizeof(status));
}

int ws_feed(struct ws *ws, const uint8_t *p, size_t len)
{
    ws->in = p;
    ws->in_len = len;
    ws->stop = false;
    int r = wslay_event_recv(ws->ctx);
    ws->in = NULL;
    ws->in_len = 0;
    if (r == WSLAY_ERR_NOMEM || flush_control(ws))
        return -ENOMEM;
    if ((r == WSLAY_ERR_CALLBACK_FAILURE || ws->proto) && close_protocol_error(ws))
        return -ENOMEM;
    if (r || ws->fatal || ws_closing(ws))
        return -RP_ECLOSED;
    return 0;
}

void ws_close(struct ws *ws, uint16_t status)
{
    wslay_event_queue_close(ws->ctx, status, NULL, 0);
    flush_control(ws);
}

const uint8_t *ws_take_output(struct ws *ws, size_t *len)
{
    flush_control(ws);
    if (!ws->out.len) {
        *len = 0;
        return NULL;
    }
    /* Swap the buffers so the caller's view survives further output. */
    struct buf t = ws->taken;
    ws->taken = ws->out;
    ws->out = t;
    buf_reset(&ws->out);
    *len = ws->taken.len;
    return ws->taken.data;
}

bool ws_closing(const struct ws *ws)
{
    return wslay_event_get_close_received(ws->ctx) || wslay_event_get_close_sent(ws->ctx) ||
           !wslay_event_get_read_enabled(ws->ctx);
}

size_t ws_frame_header(uint8_t hdr[10], uint64_t n)
{
    hdr[0] = 0x82; /* FIN, binary */
    if (n < 126) {
        hdr[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(n >> 8);
        hdr[3] = (uint8_t)n;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)(n >> (56 - 8 * i));
    return 10;
}
