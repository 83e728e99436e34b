/*
 * libringpush: connection, frame I/O, request/reply matching, and the op
 * helpers of the wire protocol.
 *
 * The socket is always non-blocking. Incoming bytes go through the protocol
 * layer's frame decoder; each complete payload is copied into its own
 * struct rp_msg and decoded there, so the msgpack tree never points into a
 * buffer that is reused. Received frames wait in one FIFO: a blocking call
 * takes its reply out of the middle of it, and pushes stay in arrival order.
 * Outgoing frames are appended to one buffer that rp_client_flush drains.
 */
#include "ringpush.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/frame.h"
#include "protocol/ident.h"
#include "protocol/jwt.h"
#include "protocol/utf8.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_CHUNK 65536
#define ZONE_CHUNK 2048
/* Keepalive pings remembered until their pongs come (older ones are forgotten). */
#define RP_KEEPALIVE_MAX 8

struct rp_client {
    int fd;
    int timeout_ms;
    uint32_t max_frame;
    uint32_t max_frame_cap; /* the most a server's announcement can raise it to */
    uint32_t next_id;
    int err;     /* sticky decode or socket error; 0 while healthy */
    bool closed; /* the server closed its side */
    int shard;
    uint32_t heartbeat_ms; /* from the hello reply; 0: no keepalive */
    /* ids of the keepalive pings whose pongs have not come yet, oldest
     * first: a wait longer than heartbeat_ms sends several before reading */
    uint32_t keepalive_ids[RP_KEEPALIVE_MAX];
    uint32_t nkeepalive;
    int64_t last_send_ms; /* when a frame was last queued */
    struct frame_dec dec;
    struct buf out;
    size_t out_off;               /* bytes of out already written */
    struct rp_msg *head, **tailp; /* receive queue */
    uint8_t rbuf[RECV_CHUNK];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connection ------------------------------------------------------- */

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            err = -errno;
            goto fail;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) {
            err = -ETIMEDOUT;
            goto fail;
        }
        if (r < 0) {
            err = -errno;
            goto fail;
        }
        socklen_t sl = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
            err = errno;
        if (err) {
            err = -err;
            goto fail;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
fail:
    close(fd);
    return err;
}

int rp_client_connect(struct rp_client **out, const char *host, uint16_t port, uint32_t max_frame)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -EINVAL;
    int fd = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = connect_one(ai, RP_DEFAULT_TIMEOUT);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return fd;

    struct rp_client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    c->timeout_ms = RP_DEFAULT_TIMEOUT;
    c->max_frame = max_frame ? max_frame : RP_DEFAULT_MAX_FRAME;
    c->max_frame_cap = max_frame ? max_frame : RP_MAX_FRAME_CAP;
    c->next_id = 1;
    c->shard = -1;
    frame_dec_init(&c->dec, c->max_frame);
    buf_init(&c->out);
    c->tailp = &c->head;
    *out = c;
    return 0;
}

void rp_client_free(struct rp_client *c)
{
    if (!c)
        return;
    while (c->head) {
        struct rp_msg *m = c->head;
        c->head = m->next;
        rp_msg_free(m);
    }
    frame_dec_deinit(&c->dec);
    buf_deinit(&c->out);
    close(c->fd);
    free(c);
}

int rp_client_fd(const struct rp_client *c)
{
    return c->fd;
}

void rp_client_set_timeout(struct rp_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

bool rp_client_closed(const struct rp_client *c)
{
    return c->closed;
}

int rp_client_shard(const struct rp_client *c)
{
    return c->shard;
}

/* ---- receiving -------------------------------------------------------- */

/* Copies one frame payload into a new message and decodes it: exactly one map. */
static int msg_decode(const uint8_t *p, uint32_t len, struct rp_msg **out)
{
    struct rp_msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return -ENOMEM;
    if (!msgpack_zone_init(&m->zone, ZONE_CHUNK)) {
        free(m);
        return -ENOMEM;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->data, p, len);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack(m->data, len, &off, &m->zone, &m->obj);
    if (r == MSGPACK_UNPACK_SUCCESS && m->obj.type == MSGPACK_OBJECT_MAP) {
        *out = m;
        return 0;
    }
    rp_msg_free(m);
    return r == MSGPACK_UNPACK_NOMEM_ERROR ? -ENOMEM : -RP_EFRAME;
}

/* Drops the i-th remembered keepalive id. */
static void keepalive_forget(struct rp_client *c, uint32_t i)
{
    memmove(c->keepalive_ids + i, c->keepalive_ids + i + 1,
            (c->nkeepalive - i - 1) * sizeof(c->keepalive_ids[0]));
    c->nkeepalive--;
}

/* Whether m is the pong to one of our keepalive pings (then forgotten). */
static bool keepalive_answered(struct rp_client *c, const struct rp_msg *m)
{
    uint64_t id;
    if (c->nkeepalive == 0 || !rp_msg_is(m, "pong") || !rp_obj_uint(&m->obj, "id", &id))
        return false;
    for (uint32_t i = 0; i < c->nkeepalive; i++) {
        if (c->keepalive_ids[i] == id) {
            keepalive_forget(c, i);
            return true;
        }
    }
    return false;
}

/* Runs bytes through the frame decoder and queues every complete frame. */
static int consume(struct rp_client *c, const uint8_t *data, size_t len)
{
    int frames = 0;
    while (len > 0) {
        const uint8_t *f;
        uint32_t flen;
        int n = frame_next(&c->dec, data, len, &f, &flen);
        if (n < 0)
            return n;
        data += n;
        len -= (size_t)n;
        if (!f)
            continue;
        struct rp_msg *m;
        int err = msg_decode(f, flen, &m);
        if (err < 0)
            return err;
        if (keepalive_answered(c, m)) {
            /* The answer to our own keepalive is nobody's business. */
            rp_msg_free(m);
            continue;
        }
        *c->tailp = m;
        c->tailp = &m->next;
        frames++;
    }
    return frames;
}

int rp_client_feed(struct rp_client *c)
{
    if (c->err)
        return c->err;
    if (c->closed)
        return -RP_ECLOSED;
    int frames = 0;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return frames;
            if (errno == ECONNRESET) {
                c->closed = true;
                return -RP_ECLOSED;
            }
            return c->err = -errno;
        }
        if (n == 0) {
            c->closed = true;
            return -RP_ECLOSED;
        }
        int r = consume(c, c->rbuf, (size_t)n);
        if (r < 0)
            return c->err = r;
        frames += r;
    }
}

int rp_client_next(struct rp_client *c, struct rp_msg **out)
{
    struct rp_msg *m = c->head;
    if (!m)
        return -EAGAIN;
    c->head = m->next;
    if (!c->head)
        c->tailp = &c->head;
    m->next = NULL;
    *out = m;
    return 0;
}

/* ---- sending ---------------------------------------------------------- */

int rp_client_flush(struct rp_client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        buf_reset(&c->out);
        c->out_off = 0;
    }
    return (int)(c->out.len - c->out_off);
}

bool rp_client_want_write(const struct rp_client *c)
{
    return c->out_off < c->out.len;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void pack_field(msgpack_packer *pk, const struct rp_field *f)
{
    pack_str(pk, f->key, strlen(f->key));
    switch (f->type) {
    case RP_F_STR:
        pack_str(pk, f->str, f->len);
        break;
    case RP_F_BIN:
        msgpack_pack_bin(pk, f->len);
        msgpack_pack_bin_body(pk, f->str, f->len);
        break;
    case RP_F_UINT:
        msgpack_pack_uint64(pk, f->u);
        break;
    case RP_F_BOOL:
        if (f->u)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case RP_F_STRS:
        msgpack_pack_array(pk, f->len);
        for (size_t i = 0; i < f->len; i++)
            pack_str(pk, f->strs[i], strlen(f->strs[i]));
        break;
    }
}

int rp_client_send(struct rp_client *c, const char *op, const struct rp_field *fields, size_t n,
                   uint32_t *id_out)
{
    size_t start = c->out.len;
    /* The length prefix is patched in once the map is packed. */
    if (buf_put_be32(&c->out, 0) < 0)
        return -ENOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->out, buf_msgpack_write);
    msgpack_pack_map(&pk, n + 1 + (id_out ? 1 : 0));
    pack_str(&pk, "op", 2);
    pack_str(&pk, op, strlen(op));
    uint32_t id = c->next_id;
    if (id_out) {
        pack_str(&pk, "id", 2);
        msgpack_pack_uint32(&pk, id);
    }
    for (size_t i = 0; i < n; i++)
        pack_field(&pk, &fields[i]);
    if (buf_failed(&c->out)) {
        c->out.len = start;
        c->out.oom = false;
        return -ENOMEM;
    }
    size_t len = c->out.len - start - FRAME_HDR;
    if (len > c->max_frame) {
        c->out.len = start;
        return -RP_ETOOLARGE;
    }
    uint8_t *h = c->out.data + start;
    h[0] = (uint8_t)(len >> 24);
    h[1] = (uint8_t)(len >> 16);
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    c->last_send_ms = now_ms();
    if (id_out) {
        /* An id is used up only by a frame that is actually queued. */
        *id_out = id;
        c->next_id = id == UINT32_MAX ? 1 : id + 1;
    }
    int r = rp_client_flush(c);
    return r < 0 ? r : 0;
}

/* ---- blocking waits --------------------------------------------------- */

/*
 * One round of waiting until deadline (< 0: none): flush, poll, feed.
 * Returns frames queued (>= 0, possibly 0 on a spurious wake-up),
 * -ETIMEDOUT, -RP_ECLOSED or another error.
 */
static int wait_once(struct rp_client *c, int64_t deadline)
{
    int r = rp_client_flush(c);
    if (r < 0)
        return r;
    int left = rp_client_tick(c);
    if (left < 0)
        return left;
    if (deadline >= 0) {
        int64_t d = deadline - now_ms();
        if (d <= 0)
            return -ETIMEDOUT;
        if (left == INT32_MAX || d < left)
            left = d > INT32_MAX - 1 ? INT32_MAX - 1 : (int)d;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN | (rp_client_want_write(c) ? POLLOUT : 0)};
    r = poll(&p, 1, left == INT32_MAX ? -1 : left);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    if (r == 0)
        return deadline >= 0 && now_ms() >= deadline ? -ETIMEDOUT : 0;
    if (p.revents & POLLOUT) {
        r = rp_client_flush(c);
        if (r < 0)
            return r;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        return rp_client_feed(c);
    return 0;
}

int rp_client_tick(struct rp_client *c)
{
    if (c->heartbeat_ms == 0 || c->closed || c->err)
        return INT32_MAX;
    int64_t due = c->last_send_ms + c->heartbeat_ms;
    int64_t now = now_ms();
    if (now < due)
        return (int)(due - now);
    uint32_t id;
    int r = rp_client_send(c, "ping", NULL, 0, &id);
    if (r < 0)
        return r;
    if (c->nkeepalive == RP_KEEPALIVE_MAX)
        keepalive_forget(c, 0); /* its pong, if it ever comes, is passed on */
    c->keepalive_ids[c->nkeepalive++] = id;
    return (int)c->heartbeat_ms;
}

static int64_t deadline_in(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Unlinks the first queued message for which match() holds. */
static struct rp_msg *take(struct rp_client *c, bool (*match)(const struct rp_msg *, uint32_t),
                           uint32_t id)
{
    for (struct rp_msg **pp = &c->head; *pp; pp = &(*pp)->next) {
        struct rp_msg *m = *pp;
        if (!match(m, id))
            continue;
        *pp = m->next;
        if (!*pp)
            c->tailp = pp;
        m->next = NULL;
        return m;
    }
    return NULL;
}

static bool is_reply_to(const struct rp_msg *m, uint32_t id)
{
    uint64_t got;
    if (rp_obj_uint(&m->obj, "id", &got))
        return got == id;
    /* A fatal error carries no id when the server could not read one. */
    return rp_msg_is(m, "error");
}

static bool is_push(const struct rp_msg *m, uint32_t id)
{
    (void)id;
    return rp_obj_get(&m->obj, "id") == NULL;
}

static int wait_for(struct rp_client *c, bool (*match)(const struct rp_msg *, uint32_t),
                    uint32_t id, int timeout_ms, struct rp_msg **out)
{
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        struct rp_msg *m = take(c, match, id);
        if (m) {
            *out = m;
            return 0;
        }
        if (c->err)
            return c->err;
        if (c->closed)
            return -RP_ECLOSED;
        if (timeout_ms == 0) {
            int r = rp_client_feed(c);
            if (r == 0)
                return -ETIMEDOUT;
            if (r < 0 && !(m = take(c, match, id)))
                return r;
            if (m) {
                *out = m;
                return 0;
            }
            continue;
        }
        int r = wait_once(c, deadline);
        if (r < 0 && r != -RP_ECLOSED)
            return r;
    }
}

int rp_call(struct rp_client *c, const char *op, const struct rp_field *fields, size_t n,
            struct rp_msg **reply)
{
    uint32_t id;
    int r = rp_client_send(c, op, fields, n, &id);
    if (r < 0)
        return r;
    return wait_for(c, is_reply_to, id, c->timeout_ms, reply);
}

int rp_client_push(struct rp_client *c, int timeout_ms, struct rp_msg **out)
{
    return wait_for(c, is_push, 0, timeout_ms, out);
}

/* ---- messages --------------------------------------------------------- */

void rp_msg_free(struct rp_msg *m)
{
    if (!m)
        return;
    msgpack_zone_destroy(&m->zone);
    free(m);
}

const msgpack_object *rp_obj_get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

const char *rp_obj_str(const msgpack_object *m, const char *key, size_t *len)
{
    const msgpack_object *v = rp_obj_get(m, key);
    if (!v || v->type != MSGPACK_OBJECT_STR)
        return NULL;
    *len = v->via.str.size;
    return v->via.str.ptr;
}

bool rp_obj_uint(const msgpack_object *m, const char *key, uint64_t *v)
{
    const msgpack_object *o = rp_obj_get(m, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

bool rp_obj_bool(const msgpack_object *m, const char *key, bool def)
{
    const msgpack_object *o = rp_obj_get(m, key);
    return o && o->type == MSGPACK_OBJECT_BOOLEAN ? o->via.boolean : def;
}

bool rp_msg_is(const struct rp_msg *m, const char *op)
{
    size_t len;
    const char *s = rp_obj_str(&m->obj, "op", &len);
    return s && len == strlen(op) && memcmp(s, op, len) == 0;
}

static const char *const code_names[] = {
    [RP_CODE_OK] = "ok",
    [RP_CODE_BAD_FRAME] = "bad_frame",
    [RP_CODE_BAD_REQUEST] = "bad_request",
    [RP_CODE_UNAUTHORIZED] = "unauthorized",
    [RP_CODE_FORBIDDEN] = "forbidden",
    [RP_CODE_NOT_FOUND] = "not_found",
    [RP_CODE_CONFLICT] = "conflict",
    [RP_CODE_TOO_LARGE] = "too_large",
    [RP_CODE_RATE_LIMITED] = "rate_limited",
    [RP_CODE_EXPIRED] = "expired",
    [RP_CODE_UNAVAILABLE] = "unavailable",
    [RP_CODE_INTERNAL] = "internal",
    [RP_CODE_UNKNOWN] = "unknown",
};
_Static_assert(sizeof(code_names) / sizeof(code_names[0]) == RP_CODE_UNKNOWN + 1,
               "one name per code");

enum rp_code rp_msg_code(const struct rp_msg *m)
{
    if (!rp_msg_is(m, "error"))
        return RP_CODE_OK;
    size_t len;
    const char *s = rp_obj_str(&m->obj, "code", &len);
    for (int i = RP_CODE_BAD_FRAME; s && i < RP_CODE_UNKNOWN; i++)
        if (strlen(code_names[i]) == len && memcmp(code_names[i], s, len) == 0)
            return (enum rp_code)i;
    return RP_CODE_UNKNOWN;
}

const char *rp_code_name(enum rp_code code)
{
    return code >= RP_CODE_OK && code <= RP_CODE_UNKNOWN ? code_names[code] : "unknown";
}

static void print_json_str(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else if (ch < 0x80)
            fputc(ch, f);
        else {
            /* str values are meant to be UTF-8 but need not be: a byte that
             * starts no valid sequence prints as U+FFFD, so the line stays JSON */
            size_t n = utf8_seq(s + i, len - i);
            if (n) {
                fwrite(s + i, 1, n, f);
                i += n - 1;
            } else {
                fputs("\\ufffd", f);
            }
        }
    }
    fputc('"', f);
}

int rp_obj_print_json(FILE *f, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("null", f);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(o->via.boolean ? "true" : "false", f);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(f, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(f, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (isfinite(o->via.f64))
            fprintf(f, "%.17g", o->via.f64);
        else
            fputs("null", f); /* JSON has no NaN or infinity */
        break;
    case MSGPACK_OBJECT_STR:
        print_json_str(f, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        fputs("{\"$bin\":\"", f);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            fprintf(f, "%02x", (unsigned char)o->via.bin.ptr[i]);
        fputs("\"}", f);
        break;
    case MSGPACK_OBJECT_EXT:
        fprintf(f, "{\"$ext\":%d}", o->via.ext.type);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                fputc(',', f);
            rp_obj_print_json(f, &o->via.array.ptr[i]);
        }
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i)
                fputc(',', f);
            if (kv->key.type == MSGPACK_OBJECT_STR)
                print_json_str(f, kv->key.via.str.ptr, kv->key.via.str.size);
            else
                fputs("\"?\"", f);
            fputc(':', f);
            rp_obj_print_json(f, &kv->val);
        }
        fputc('}', f);
        break;
    }
    return ferror(f) ? -EIO : 0;
}

/* ---- tokens ----------------------------------------------------------- */

int rp_token_mint(const char *user, uint64_t ttl_s, const void *key, size_t keylen, char **out)
{
    if (!ident_user_ok(strv_c(user)))
        return -EINVAL;
    struct buf b;
    buf_init(&b);
    int r = jwt_sign_hs256(user, strlen(user), (uint64_t)time(NULL) + ttl_s, key, keylen, &b);
    if (r == 0)
        r = buf_put_u8(&b, 0);
    if (r < 0) {
        buf_deinit(&b);
        return r;
    }
    *out = (char *)b.data; /* ownership of the buffer passes to the caller */
    return 0;
}

/* ---- session ---------------------------------------------------------- */

int rp_hello(struct rp_client *c, const char *token, const char *device, bool resume,
             struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("token", token), RP_FSTR("device", device),
                           RP_FBOOL("resume", resume)};
    int r = rp_call(c, "hello", f, 3, reply);
    if (r < 0 || !rp_msg_is(*reply, "ok"))
        return r;
    uint64_t v;
    if (rp_obj_uint(&(*reply)->obj, "max_frame", &v) && v > 0) {
        /* Frames from the server never exceed the limit it announces; the
         * client takes it up to its own cap, not whatever a server says. */
        uint32_t m = v < c->max_frame_cap ? (uint32_t)v : c->max_frame_cap;
        c->max_frame = m;
        c->dec.max_frame = m;
    }
    c->shard = rp_obj_uint(&(*reply)->obj, "shard", &v) && v <= INT32_MAX ? (int)v : -1;
    /* Pinging once per heartbeat keeps well inside the server's idle timeout. */
    c->heartbeat_ms =
        rp_obj_uint(&(*reply)->obj, "heartbeat_ms", &v) && v > 0 && v < INT32_MAX ? (uint32_t)v : 0;
    return 0;
}

int rp_ping(struct rp_client *c)
{
    struct rp_msg *m;
    int r = rp_call(c, "ping", NULL, 0, &m);
    if (r < 0)
        return r;
    r = rp_msg_is(m, "pong") ? 0 : -RP_EREQUEST;
    rp_msg_free(m);
    return r;
}
