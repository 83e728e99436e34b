/*
 * The admin HTTP server on shard 0's io_uring (see admin.h). Admin traffic is
 * a handful of requests a second at most, so this is the simple shape of an
 * io_uring server: ordinary descriptors, one single-shot accept, one recv or
 * one send in flight per connection into its own fixed buffer, and a table of
 * ADMIN_MAX_CONNS connections. When the table is full, a new connection
 * takes the slot of the one idle the longest (between requests, or connected
 * and silent): it waits, with accepting stopped, until that connection's
 * last completion frees the slot. Only when every connection is inside a
 * request is a new one closed at once.
 *
 * user_data is (UOP_ADMIN, sub-op << 24 | connection index, generation); a
 * completion for a connection whose generation moved on is dropped.
 *
 * A connection answers one request at a time: after a complete request it
 * stops reading until the response has gone out; bytes that arrived behind
 * the request (pipelining) wait in `pend` and are parsed next. Deadlines are
 * checked by the admin's own timer:
 *   - a request must arrive whole within ADMIN_REQUEST_MS of its first byte
 *     (a client trickling its headers byte by byte is closed then);
 *   - a response must be taken by the client within ADMIN_REQUEST_MS;
 *   - an idle keep-alive connection is closed after ADMIN_IDLE_MS.
 *   - a request carried to the chat layer must be answered within
 *     ADMIN_CHAT_MS (503 otherwise; a late answer is dropped).
 * A connection waiting for a backup has no deadline.
 *
 * Closing after an error response is "lingering": the write side is shut
 * down, then input is read and discarded until the client closes (or
 * ADMIN_LINGER_MS), so a client still sending an oversized body reads the
 * 413 instead of a connection reset.
 */
#define _GNU_SOURCE /* memmem */
#include "engine/admin/admin.h"

#include "base/err.h"
#include "base/log.h"
#include "engine/admin/backup.h"
#include "engine/admin/http.h"
#include "engine/admin/metrics.h"
#include "engine/admin/route.h"
#include "engine/server.h"
#include "engine/shard.h"
#include "engine/uring.h"
#include "protocol/req.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_MAX_CONNS  64u
#define ADMIN_RECV_SIZE  4096u
#define ADMIN_REQUEST_MS 5000u
#define ADMIN_IDLE_MS    15000u
#define ADMIN_LINGER_MS  2000u
#define ADMIN_CHAT_MS    10000u
#define ADMIN_TICK_NS    250000000L

enum aop { AOP_ACCEPT, AOP_RECV, AOP_SEND, AOP_CONTINUE, AOP_TICK, AOP_EVENT, AOP_IGNORE };

struct aconn {
    int fd; /* -1: free */
    uint32_t gen;
    bool recv_busy, send_busy; /* an operation in flight */
    bool cont_busy;            /* a "100 Continue" in flight */
    bool send_after_cont;      /* the response waits for it: sends may not overlap */
    bool closing;              /* shut down; freed when nothing is in flight */
    bool lingering;            /* response sent, write side shut: draining input */
    bool waiting;              /* a request is being answered asynchronously */
    bool close_after;          /* close once the response has gone out */
    bool req_timed;            /* the current request's deadline is set */
    bool head_only;            /* the current request is a HEAD: its response has no body */
    bool head_checked;         /* the current request's key was checked at the end of its head */
    uint32_t req_no;           /* requests answered so far: ties a chat result to its request */
    enum route_id chat_route;  /* the endpoint a chat result answers */
    uint64_t deadline_ms;
    struct http_reader rd;
    struct buf pend; /* received bytes behind the request being answered */
    struct buf out;  /* the response; borrowed by the kernel while send_busy */
    size_t out_off;
    uint8_t in[ADMIN_RECV_SIZE]; /* borrowed by the kernel while recv_busy */
};

struct admin {
    struct shard *sh;
    int listen_fd;
    int event_fd;
    uint64_t event_val; /* read target of event_fd */
    bool stopping;
    bool accept_paused; /* out of descriptors: accepting resumes at the next tick */
    int held_fd;        /* accepted, waiting for the slot of an idle connection; -1: none */
    struct __kernel_timespec tick_ts;
    struct backup backup;
    uint32_t backup_idx, backup_gen; /* the connection waiting for the backup */
    struct admin_counters ctr;
    struct aconn conns[ADMIN_MAX_CONNS];
};

static uint64_t aud(enum aop op, uint32_t idx, uint32_t gen)
{
    return ud_pack(UOP_ADMIN, (uint32_t)op << 24 | idx, gen);
}

static uint32_t aconn_idx(const struct admin *a, const struct aconn *c)
{
    return (uint32_t)(c - a->conns);
}

/* ---- submissions ---- */

static void arm_accept(struct admin *a)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    io_uring_prep_accept(sqe, a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, aud(AOP_ACCEPT, 0, 0));
}

static void arm_tick(struct admin *a)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    a->tick_ts.tv_sec = 0;
    a->tick_ts.tv_nsec = ADMIN_TICK_NS;
    io_uring_prep_timeout(sqe, &a->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, aud(AOP_TICK, 0, 0));
}

static void arm_event(struct admin *a)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    io_uring_prep_read(sqe, a->event_fd, &a->event_val, sizeof(a->event_val), 0);
    io_uring_sqe_set_data64(sqe, aud(AOP_EVENT, 0, 0));
}

static void arm_recv(struct admin *a, struct aconn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    io_uring_prep_recv(sqe, c->fd, c->in, sizeof(c->in), 0);
    io_uring_sqe_set_data64(sqe, aud(AOP_RECV, aconn_idx(a, c), c->gen));
    c->recv_busy = true;
}

static void arm_send(struct admin *a, struct aconn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    io_uring_prep_send(sqe, c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, aud(AOP_SEND, aconn_idx(a, c), c->gen));
    c->send_busy = true;
}

/* The interim answer to "Expect: 100-continue"; nothing else is being sent
 * while a request is read. A short write is not retried: the client then
 * sends its body after its own wait. */
static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void arm_continue(struct admin *a, struct aconn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&a->sh->ring);
    io_uring_prep_send(sqe, c->fd, continue_line, sizeof(continue_line) - 1, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, aud(AOP_CONTINUE, aconn_idx(a, c), c->gen));
    c->cont_busy = true;
}

/* ---- connection lifecycle ---- */

static void aconn_release(struct admin *a, struct aconn *c)
{
    close(c->fd);
    http_reader_deinit(&c->rd);
    buf_deinit(&c->pend);
    buf_deinit(&c->out);
    c->fd = -1;
    c->gen = (c->gen + 1) & 0xffffffu;
    a->ctr.conns--;
}

static void aconn_try_free(struct admin *a, struct aconn *c)
{
    if (c->closing && !c->recv_busy && !c->send_busy && !c->cont_busy)
        aconn_release(a, c);
}

/* Shutting the socket down completes whatever is in flight on it; the slot is
 * freed when the last of those completions has been reaped. */
static void aconn_close(struct admin *a, struct aconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    shutdown(c->fd, SHUT_RDWR);
    aconn_try_free(a, c);
}

/*
 * The largest request body: a message's body of max_body bytes written in JSON
 * takes up to 6 bytes a byte (a control character is \u00XX), and the other
 * fields of a send (ids, type, cmid) fit in 16 KiB however they are escaped.
 */
static size_t admin_body_max(const struct config *cfg)
{
    size_t n = (size_t)6 * cfg->max_body + 16384;
    return n > HTTP_MAX_BODY ? n : HTTP_MAX_BODY;
}

static struct aconn *aconn_open(struct admin *a, int fd)
{
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct aconn *c = &a->conns[i];
        if (c->fd >= 0)
            continue;
        uint32_t gen = c->gen;
        memset(c, 0, offsetof(struct aconn, in));
        c->fd = fd;
        c->gen = gen;
        http_reader_init(&c->rd);
        c->rd.max_body = admin_body_max(a->sh->cfg);
        buf_init(&c->pend);
        buf_init(&c->out);
        c->deadline_ms = a->sh->now_ms + ADMIN_IDLE_MS;
        a->ctr.conns++;
        return c;
    }
    return NULL;
}

/* The connection to close for a new one when the table is full: the one idle
 * the longest (an idle connection's deadline is its last activity plus
 * ADMIN_IDLE_MS). NULL when every connection is inside a request. */
static struct aconn *idle_victim(struct admin *a)
{
    struct aconn *v = NULL;
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct aconn *c = &a->conns[i];
        if (c->fd < 0 || c->closing || c->lingering || c->waiting || c->send_busy || c->cont_busy ||
            c->pend.len || http_reader_started(&c->rd))
            continue;
        if (!v || c->deadline_ms < v->deadline_ms)
            v = c;
    }
    return v;
}

/* ---- responses ---- */

/* Bookkeeping shared by every response; returns the effective keep-alive. */
static bool respond_prepare(struct admin *a, struct aconn *c, int status, bool keep_alive)
{
    keep_alive = keep_alive && !a->stopping;
    a->ctr.requests++;
    if (status == 401)
        a->ctr.unauthorized++;
    else if (status >= 400)
        a->ctr.errors++;
    buf_reset(&c->out);
    c->out_off = 0;
    c->close_after = !keep_alive;
    c->waiting = false;
    c->req_no++;
    c->deadline_ms = a->sh->now_ms + ADMIN_REQUEST_MS;
    return keep_alive;
}

static void respond_send(struct admin *a, struct aconn *c, int write_err)
{
    if (write_err) {
        log_warn("admin_oom", "conn=%u", aconn_idx(a, c));
        aconn_close(a, c);
        return;
    }
    if (c->head_only) {
        /* the head of what a GET gets, Content-Length included (RFC 9110 9.3.2) */
        const uint8_t *end = memmem(c->out.data, c->out.len, "\r\n\r\n", 4);
        if (end)
            c->out.len = (size_t)(end + 4 - c->out.data);
    }
    if (c->cont_busy)
        c->send_after_cont = true;
    else
        arm_send(a, c);
}

static void respond_raw(struct admin *a, struct aconn *c, int status, const char *ctype,
                        const void *body, size_t len, bool keep_alive)
{
    keep_alive = respond_prepare(a, c, status, keep_alive);
    respond_send(a, c, http_write_response(&c->out, status, ctype, body, len, keep_alive));
}

static void respond_json(struct admin *a, struct aconn *c, int status, const char *json,
                         bool keep_alive)
{
    keep_alive = respond_prepare(a, c, status, keep_alive);
    respond_send(a, c, http_write_json(&c->out, status, json, keep_alive));
}

static void respond_error(struct admin *a, struct aconn *c, int status, const char *msg,
                          bool keep_alive)
{
    keep_alive = respond_prepare(a, c, status, keep_alive);
    respond_send(a, c, http_write_error(&c->out, status, msg, keep_alive));
}

/* ---- handlers ---- */

static void handle_metrics(struct admin *a, struct aconn *c, const struct http_req *req)
{
    struct buf text;
    buf_init(&text);
    if (metrics_render(a->sh->srv, &a->ctr, &text))
        respond_error(a, c, 503, "out of memory rendering metrics", req->keep_alive);
    else
        respond_raw(a, c, 200, "text/plain; version=0.0.4; charset=utf-8", text.data, text.len,
                    req->keep_alive);
    buf_deinit(&text);
}

static void handle_backup(struct admin *a, struct aconn *c, const struct http_req *req)
{
    char dir[ROUTE_MAX_DIR];
    const char *why = NULL;
    if (route_parse_backup(req->body, req->body_len, dir, &why)) {
        respond_error(a, c, 400, why, req->keep_alive);
        return;
    }
    int r = backup_start(&a->backup, a->sh->srv->storage, dir, a->event_fd);
    if (r == -EBUSY) {
        respond_error(a, c, 409, "a backup is already running", req->keep_alive);
        return;
    }
    if (r) {
        respond_error(a, c, 503, err_str(r), req->keep_alive);
        return;
    }
    c->waiting = true;
    c->close_after = !req->keep_alive;
    a->backup_idx = aconn_idx(a, c);
    a->backup_gen = c->gen;
}

/* A target refused before any checkpoint was tried: the caller's mistake
 * (answered 4xx), not a failed backup. */
static bool backup_target_refused(int res)
{
    return res == -EEXIST || res == -ENOENT || res == -ENOTDIR;
}

static void backup_answer(struct admin *a, int res, uint64_t took_ms)
{
    if (!res)
        a->ctr.backups_ok++;
    else if (!backup_target_refused(res))
        a->ctr.backups_failed++;
    struct aconn *c = &a->conns[a->backup_idx];
    if (c->fd < 0 || c->gen != a->backup_gen || !c->waiting || c->closing)
        return; /* the client went away; the result is in the log */
    bool keep = !c->close_after;
    switch (res) {
    case 0: {
        cJSON *o = cJSON_CreateObject();
        char *text = NULL;
        if (o && cJSON_AddStringToObject(o, "dir", a->backup.dir) &&
            cJSON_AddNumberToObject(o, "ms", (double)took_ms))
            text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (text)
            respond_json(a, c, 200, text, keep);
        else
            respond_error(a, c, 503, "out of memory", keep);
        cJSON_free(text);
        return;
    }
    case -EEXIST:
        respond_error(a, c, 409, "dir already exists", keep);
        return;
    case -ENOENT:
        respond_error(a, c, 400, "the parent of dir does not exist", keep);
        return;
    case -ENOTDIR:
        respond_error(a, c, 400, "the parent of dir is not a directory", keep);
        return;
    default:
        respond_error(a, c, 503, "the checkpoint failed (see the server log)", keep);
    }
}

/*
 * POST /v1/messages, GET /v1/users/<u>, POST /v1/users/<u>/kick act on the
 * chat state of whichever shard is the user's home or the conversation's
 * owner: the chat layer carries them there and answers through
 * env->admin_done, which lands in admin_chat_done with the tag made here.
 * A tag names (connection, generation, request number), so an answer that
 * arrives after its request timed out is recognised and dropped.
 */
static uint64_t chat_tag(const struct admin *a, const struct aconn *c)
{
    return (uint64_t)c->req_no << 32 | (uint64_t)(c->gen & 0xffffffu) << 8 | aconn_idx(a, c);
}

static void chat_wait(struct admin *a, struct aconn *c, const struct http_req *req)
{
    c->waiting = true;
    c->close_after = !req->keep_alive;
    c->deadline_ms = a->sh->now_ms + ADMIN_CHAT_MS;
}

static void handle_chat(struct admin *a, struct aconn *c, const struct http_req *req,
                        const struct route_match *m)
{
    struct chat *chat = a->sh->chat;
    if (m->id == ROUTE_USER) {
        chat_wait(a, c, req);
        chat_admin_presence(chat, chat_tag(a, c), (struct strv){m->user, (uint32_t)m->user_len});
        return;
    }
    if (m->id == ROUTE_KICK) {
        chat_wait(a, c, req);
        chat_admin_kick(chat, chat_tag(a, c), (struct strv){m->user, (uint32_t)m->user_len});
        return;
    }
    struct route_message msg;
    const char *why = NULL;
    int r = route_parse_message(req->body, req->body_len, a->sh->cfg->max_body, &msg, &why);
    if (r) {
        respond_error(a, c,
                      r == -RP_EREQUEST    ? 400
                      : r == -RP_ETOOLARGE ? 413
                                           : 503,
                      why ? why : "out of memory", req->keep_alive);
        return;
    }
    struct req send = {.op = OP_SEND};
    if (msg.to[0])
        send.to = strv_c(msg.to);
    else
        send.group = strv_c(msg.group);
    send.cmid = strv_c(msg.cmid);
    send.type = strv_c(msg.type);
    send.body = (struct strv){msg.body, (uint32_t)msg.body_len};
    chat_wait(a, c, req);
    chat_admin_send(chat, chat_tag(a, c), strv_c(msg.from), &send);
    route_message_deinit(&msg);
}

/* The HTTP status of a chat_admin_result error (see chat.h). */
static int chat_status(int err)
{
    switch (err) {
    case -RP_EREQUEST:
        return 400;
    case -EPERM:
    case -EACCES:
        return 403;
    case -ENOENT:
        return 404;
    case -EEXIST:
        return 409;
    case -RP_ETOOLARGE:
        return 413;
    case -EAGAIN:
        return 429;
    case -RP_ESTORAGE:
    case -RP_EFULL:
    case -RP_ECLOSED:
        return 503;
    default:
        return 500;
    }
}

static char *chat_json(enum route_id id, const struct chat_admin_result *res)
{
    char *text = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = true;
    if (id == ROUTE_MESSAGES) {
        char *conv = strndup(res->conv.p, res->conv.len); /* a view, not NUL-terminated */
        ok = conv && cJSON_AddStringToObject(o, "conv", conv);
        free(conv);
        ok = ok && cJSON_AddNumberToObject(o, "seq", (double)res->seq) &&
             cJSON_AddNumberToObject(o, "ts", (double)res->ts);
        if (ok && res->dup)
            ok = cJSON_AddTrueToObject(o, "dup") != NULL;
    } else if (id == ROUTE_USER) {
        cJSON *devs = NULL;
        ok = cJSON_AddBoolToObject(o, "online", res->online) &&
             (devs = cJSON_AddArrayToObject(o, "devices"));
        for (uint32_t i = 0; ok && i < res->ndevices && i < CHAT_ADMIN_DEVICES_MAX; i++) {
            char *v = strndup(res->devices[i].p, res->devices[i].len);
            cJSON *d = v ? cJSON_CreateString(v) : NULL;
            free(v);
            ok = d && cJSON_AddItemToArray(devs, d);
        }
    } else {
        ok = cJSON_AddNumberToObject(o, "kicked", res->kicked) != NULL;
    }
    if (ok)
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

void admin_chat_done(struct shard *sh, uint64_t tag, const struct chat_admin_result *res)
{
    struct admin *a = sh->admin;
    uint32_t idx = (uint32_t)tag & 0xffu, gen = (uint32_t)(tag >> 8) & 0xffffffu;
    if (!a || idx >= ADMIN_MAX_CONNS)
        return;
    struct aconn *c = &a->conns[idx];
    if (c->fd < 0 || c->closing || !c->waiting || (c->gen & 0xffffffu) != gen ||
        c->req_no != (uint32_t)(tag >> 32))
        return; /* timed out or gone */
    bool keep = !c->close_after;
    if (res->err) {
        respond_error(a, c, chat_status(res->err), res->msg ? res->msg : err_str(res->err), keep);
        return;
    }
    char *text = chat_json(c->chat_route, res);
    if (text)
        respond_json(a, c, 200, text, keep);
    else
        respond_error(a, c, 503, "out of memory", keep);
    cJSON_free(text);
}

static void handle(struct admin *a, struct aconn *c, const struct http_req *req)
{
    struct route_match m;
    /* HEAD is GET without the body */
    c->head_only = req->method == HTTP_HEAD;
    route_match(c->head_only ? HTTP_GET : req->method, req->target, req->target_len, &m);
    log_debug("admin_request", "method=%s target=\"%.*s\" route=%s",
              http_method_str((enum http_method)req->method), (int)req->target_len, req->target,
              route_name(m.id));
    if (m.id == ROUTE_HEALTHZ) {
        respond_json(a, c, 200, "{\"status\":\"ok\"}", req->keep_alive);
        return;
    }
    /* Unknown paths answer 401 too without the key: nothing is revealed to a
     * caller who cannot use the API. */
    if (!route_auth_ok(a->sh->cfg->admin_key, req->auth, req->auth_len)) {
        respond_error(a, c, 401, "missing or wrong admin key", req->keep_alive);
        return;
    }
    switch (m.id) {
    case ROUTE_METRICS:
        handle_metrics(a, c, req);
        break;
    case ROUTE_BACKUP:
        handle_backup(a, c, req);
        break;
    case ROUTE_MESSAGES:
    case ROUTE_USER:
    case ROUTE_KICK:
        c->chat_route = m.id;
        handle_chat(a, c, req, &m);
        break;
    default:
        respond_error(a, c, 404, "no such endpoint", req->keep_alive);
    }
}

/*
 * A request whose head is read, checked for the key before its body is: a
 * caller without it is answered 401 without the server buffering a body of
 * up to the bound for it. False only when the key is wrong for a path that
 * needs it.
 */
static bool head_authorized(struct admin *a, struct aconn *c)
{
    struct http_req head;
    if (http_reader_head(&c->rd, &head) != 1)
        return true; /* not read yet */
    c->head_checked = true;
    struct route_match m;
    unsigned method = head.method == HTTP_HEAD ? HTTP_GET : head.method;
    route_match(method, head.target, head.target_len, &m);
    return m.id == ROUTE_HEALTHZ || route_auth_ok(a->sh->cfg->admin_key, head.auth, head.auth_len);
}

/* ---- input ---- */

static void input(struct admin *a, struct aconn *c, const uint8_t *data, size_t len)
{
    while (len) {
        size_t used;
        struct http_req req;
        int r = http_reader_feed(&c->rd, data, len, &used, &req);
        data += used;
        len -= used;
        if (r == 0) {
            if (!c->head_checked && !head_authorized(a, c)) {
                respond_error(a, c, 401, "missing or wrong admin key", false);
                return;
            }
            break;
        }
        if (r < 0) {
            c->head_only = false; /* not the answer to a HEAD */
            if (r == -RP_ETOOLARGE)
                respond_error(a, c, 413, "request head or body too large", false);
            else if (r == -ENOMEM)
                respond_error(a, c, 503, "out of memory", false);
            else
                respond_error(a, c, 400, "malformed HTTP request", false);
            return;
        }
        if (len && buf_append(&c->pend, data, len)) {
            aconn_close(a, c);
            return;
        }
        handle(a, c, &req);
        return;
    }
    if (!c->send_busy && !c->cont_busy && http_reader_continue(&c->rd))
        arm_continue(a, c);
    if (http_reader_started(&c->rd) && !c->req_timed) {
        c->req_timed = true;
        c->deadline_ms = a->sh->now_ms + ADMIN_REQUEST_MS;
    }
    arm_recv(a, c);
}

static void on_recv(struct admin *a, struct aconn *c, int res)
{
    c->recv_busy = false;
    if (c->closing) {
        aconn_try_free(a, c);
        return;
    }
    if (res <= 0) {
        aconn_close(a, c);
        return;
    }
    if (c->lingering) {
        arm_recv(a, c);
        return;
    }
    input(a, c, c->in, (size_t)res);
}

static void on_send(struct admin *a, struct aconn *c, int res)
{
    c->send_busy = false;
    if (c->closing) {
        aconn_try_free(a, c);
        return;
    }
    if (res < 0) {
        aconn_close(a, c);
        return;
    }
    c->out_off += (size_t)res;
    if (c->out_off < c->out.len) {
        arm_send(a, c);
        return;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    if (c->close_after) {
        c->lingering = true;
        shutdown(c->fd, SHUT_WR);
        c->deadline_ms = a->sh->now_ms + ADMIN_LINGER_MS;
        arm_recv(a, c);
        return;
    }
    http_reader_next(&c->rd);
    c->head_checked = false;
    c->head_only = false;
    c->req_timed = false;
    c->deadline_ms = a->sh->now_ms + ADMIN_IDLE_MS;
    if (!c->pend.len) {
        arm_recv(a, c);
        return;
    }
    /* Parse what was pipelined behind the request; input() may queue a new
     * remainder in c->pend, so work from a copy taken out of it. */
    struct buf rest = c->pend;
    buf_init(&c->pend);
    input(a, c, rest.data, rest.len);
    buf_deinit(&rest);
}

/* ---- timers, events, accept ---- */

static void on_tick(struct admin *a)
{
    uint64_t now = a->sh->now_ms;
    if (a->accept_paused && !a->stopping) {
        a->accept_paused = false;
        arm_accept(a);
    }
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++) {
        struct aconn *c = &a->conns[i];
        if (c->fd < 0 || c->closing || now < c->deadline_ms)
            continue;
        if (c->waiting) {
            bool backup = a->backup.running && a->backup_idx == i && a->backup_gen == c->gen;
            if (!backup)
                respond_error(a, c, 503, "the request was not answered in time", !c->close_after);
            continue;
        }
        if (!c->lingering) {
            a->ctr.timeouts++;
            log_info("admin_timeout", "conn=%u started=%d", i, (int)http_reader_started(&c->rd));
        }
        aconn_close(a, c);
    }
    if (!a->stopping)
        arm_tick(a);
}

static void on_event(struct admin *a)
{
    int res;
    uint64_t took;
    if (backup_poll(&a->backup, &res, &took))
        backup_answer(a, res, took);
    if (!a->stopping)
        arm_event(a);
}

static void on_accept(struct admin *a, int res)
{
    if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
        /* the connection stays queued and would fail again at once: retried
         * at the next tick instead of spinning */
        if (!a->accept_paused)
            log_warn("admin_accept_paused", "err=\"%s\" until=next_tick", err_str(res));
        a->accept_paused = true;
        return;
    }
    if (res < 0) {
        if (!a->stopping)
            arm_accept(a);
        if (res != -ECANCELED)
            log_warn("admin_accept_failed", "err=\"%s\"", err_str(res));
        return;
    }
    if (a->stopping) {
        log_warn("admin_conn_refused", "reason=\"stopping\"");
        close(res);
        return;
    }
    struct aconn *c = aconn_open(a, res);
    if (c) {
        arm_recv(a, c);
        arm_accept(a);
        return;
    }
    struct aconn *v = idle_victim(a);
    if (!v) {
        log_warn("admin_conn_refused", "reason=\"table full\"");
        close(res);
        arm_accept(a);
        return;
    }
    /* admitted by admit_held once v's slot is free; accepting waits until then */
    a->ctr.idle_closed++;
    log_info("admin_idle_closed", "conn=%u reason=\"table full\"", aconn_idx(a, v));
    a->held_fd = res;
    aconn_close(a, v);
}

/* Gives the held connection a slot once one is free, and accepts again. */
static void admit_held(struct admin *a)
{
    if (a->held_fd < 0 || a->stopping)
        return;
    struct aconn *c = aconn_open(a, a->held_fd);
    if (!c)
        return;
    a->held_fd = -1;
    arm_recv(a, c);
    arm_accept(a);
}

static void on_cqe(struct admin *a, struct io_uring_cqe *cqe)
{
    uint32_t slot = ud_slot(cqe->user_data);
    enum aop op = (enum aop)(slot >> 24);
    uint32_t idx = slot & 0xffffffu;
    switch (op) {
    case AOP_ACCEPT:
        on_accept(a, cqe->res);
        return;
    case AOP_TICK:
        on_tick(a);
        return;
    case AOP_EVENT:
        on_event(a);
        return;
    case AOP_RECV:
    case AOP_SEND:
    case AOP_CONTINUE:
        break;
    default:
        return;
    }
    if (idx >= ADMIN_MAX_CONNS)
        return;
    struct aconn *c = &a->conns[idx];
    if (c->fd < 0 || c->gen != ud_gen(cqe->user_data))
        return;
    if (op == AOP_RECV) {
        on_recv(a, c, cqe->res);
    } else if (op == AOP_CONTINUE) {
        c->cont_busy = false;
        if (!c->closing && cqe->res != (int)sizeof(continue_line) - 1)
            aconn_close(a, c); /* half a line would garble what follows */
        if (c->closing) {
            aconn_try_free(a, c);
        } else if (c->send_after_cont) {
            c->send_after_cont = false;
            arm_send(a, c);
        }
    } else {
        on_send(a, c, cqe->res);
    }
}

void admin_on_cqe(struct shard *sh, struct io_uring_cqe *cqe)
{
    struct admin *a = sh->admin;
    if (!a)
        return;
    on_cqe(a, cqe);
    admit_held(a);
}

/* ---- start and stop ---- */

static int listen_open(const struct config *cfg, int *out)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->admin_port)};
    if (inet_pton(AF_INET, cfg->bind, &addr.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 64)) {
        int err = -errno;
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

int admin_start(struct shard *sh)
{
    const struct config *cfg = sh->cfg;
    if (cfg->admin_port == 0)
        return 0;
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->sh = sh;
    a->listen_fd = a->event_fd = a->held_fd = -1;
    backup_init(&a->backup);
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++)
        a->conns[i].fd = -1;
    int r = listen_open(cfg, &a->listen_fd);
    if (r) {
        log_error("admin_listen_failed", "bind=%s port=%u err=\"%s\"", cfg->bind, cfg->admin_port,
                  err_str(r));
        goto free_admin;
    }
    a->event_fd = eventfd(0, EFD_CLOEXEC);
    if (a->event_fd < 0) {
        r = -errno;
        goto close_listen;
    }
    if (!cfg->admin_key[0])
        log_warn("admin_key_empty", "reason=\"no admin_key: only /healthz will answer\"");
    sh->admin = a;
    arm_accept(a);
    arm_tick(a);
    arm_event(a);
    log_info("admin_listening", "bind=%s port=%u", cfg->bind, cfg->admin_port);
    return 0;

close_listen:
    close(a->listen_fd);
free_admin:
    free(a);
    return r;
}

void admin_stop(struct shard *sh)
{
    struct admin *a = sh->admin;
    if (!a || a->stopping)
        return;
    a->stopping = true;
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_cancel64(sqe, aud(AOP_ACCEPT, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, aud(AOP_IGNORE, 0, 0));
    if (a->held_fd >= 0) {
        close(a->held_fd);
        a->held_fd = -1;
    }
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conns[i].fd >= 0)
            aconn_close(a, &a->conns[i]);
}

void admin_free(struct shard *sh)
{
    struct admin *a = sh->admin;
    if (!a)
        return;
    /* The storage closes after this: a checkpoint still running must end first. */
    backup_deinit(&a->backup);
    for (uint32_t i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conns[i].fd >= 0)
            aconn_release(a, &a->conns[i]);
    if (a->held_fd >= 0)
        close(a->held_fd);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->event_fd >= 0)
        close(a->event_fd);
    free(a);
    sh->admin = NULL;
}
