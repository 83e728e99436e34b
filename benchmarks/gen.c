/*
 * One worker's epoll loop. Reads go into one worker-wide buffer and are parsed
 * in place; only the tail of a partial frame is kept per connection, so an idle
 * connection costs this process one small struct and a socket. Writes go
 * straight to the socket; whatever the kernel does not take waits in the
 * connection's out buffer under EPOLLOUT.
 *
 * Windows: a pair's sender counts a message in flight until its receiver (kept
 * in the same worker) has it; the fan-out publisher until every subscriber has
 * it (delivered[] in shared memory, completion signalled on an eventfd), so the
 * window means the same thing for every protocol, acknowledged or not.
 */
#include "gen.h"

#include "base/clock.h"
#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE    (256 * 1024)
#define GROUP_CHUNK  500 /* users per group request (PROTOCOL §6) */
#define EFD_TAG      UINT32_MAX
#define EPOLL_EVENTS 512
#define NAME_MAX_LEN 48

enum conn_state { C_IDLE, C_CONNECTING, C_LOGIN, C_SUBSCRIBE, C_SETUP, C_READY, C_DEAD };
enum conn_role { R_SUBSCRIBER, R_SENDER, R_PINGER };

struct conn {
    int fd;
    uint8_t state;
    uint8_t role;
    bool want_out;
    uint32_t inflight;
    uint64_t seq;     /* next publish seq */
    uint64_t ping_ns; /* send time of the ping in flight */
    struct buf out;   /* bytes the socket did not take yet */
    struct buf in;    /* the tail of a partial frame */
};

struct worker {
    struct gen_shared *sh;
    const struct gen_opts *o;
    struct gen_stats *st;
    unsigned id;
    uint32_t lo, hi;
    struct conn *c; /* c[i - lo] */
    int ep;
    uint8_t *rbuf;
    uint32_t next_connect; /* next index to connect in GEN_CONNECT */
    uint32_t in_progress;  /* connections connecting, logging in or subscribing */
    uint32_t group_next;   /* fan-out setup: next subscriber index to add */
    uint32_t subscribers;  /* fan-out: receivers per message */
    uint32_t *senders;     /* rate mode: local senders, round-robin */
    uint32_t nsenders, rr;
    uint64_t next_send_ns, interval_ns;
};

void gen_slice(const struct gen_opts *o, unsigned id, uint32_t *lo, uint32_t *hi)
{
    /* Slices hold whole pairs, so a sender and its receiver share a worker. */
    uint32_t units = o->scenario == GEN_PAIRS ? o->conns / 2 : o->conns;
    uint32_t per = units / o->workers, extra = units % o->workers;
    uint32_t a = id * per + (id < extra ? id : extra);
    uint32_t b = a + per + (id < extra ? 1 : 0);
    uint32_t k = o->scenario == GEN_PAIRS ? 2 : 1;
    *lo = a * k;
    *hi = b * k;
}

size_t gen_shared_size(uint32_t max_messages)
{
    return sizeof(struct gen_shared) + (size_t)max_messages * sizeof(_Atomic uint32_t);
}

static void note_error(struct worker *w, const char *what)
{
    if (!w->st->first_error[0])
        snprintf(w->st->first_error, sizeof(w->st->first_error), "%s", what);
}

static enum conn_role role_of(const struct gen_opts *o, uint32_t i)
{
    switch (o->scenario) {
    case GEN_PING:
        return R_PINGER;
    case GEN_FANOUT:
        return i == 0 ? R_SENDER : R_SUBSCRIBER;
    case GEN_PAIRS:
        return i % 2 == 0 ? R_SENDER : R_SUBSCRIBER;
    default:
        return R_SUBSCRIBER;
    }
}

static int phase(struct worker *w)
{
    return atomic_load_explicit(&w->sh->phase, memory_order_acquire);
}

static void set_events(struct worker *w, uint32_t i, bool out)
{
    struct conn *c = &w->c[i - w->lo];
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = i};
    if (c->want_out == out)
        return;
    c->want_out = out;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_fail(struct worker *w, uint32_t i, const char *why)
{
    struct conn *c = &w->c[i - w->lo];
    if (c->state == C_DEAD)
        return;
    if (c->state == C_READY) {
        w->st->closed++;
    } else {
        w->st->failed++;
        if (c->state != C_IDLE)
            w->in_progress--;
    }
    note_error(w, why);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    buf_deinit(&c->out);
    buf_deinit(&c->in);
}

/* Writes what c->out holds; keeps the rest under EPOLLOUT. */
static void conn_flush(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    if (c->state == C_DEAD || c->state == C_CONNECTING)
        return;
    if (buf_failed(&c->out)) {
        conn_fail(w, i, "out of memory");
        return;
    }
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            conn_fail(w, i, strerror(errno));
            return;
        }
        off += (size_t)n;
    }
    if (off == c->out.len) {
        buf_reset(&c->out);
    } else if (off) {
        memmove(c->out.data, c->out.data + off, c->out.len - off);
        c->out.len -= off;
    }
    set_events(w, i, c->out.len > 0);
}

static void user_name(const struct worker *w, char *out, uint32_t i)
{
    snprintf(out, NAME_MAX_LEN, "u%u", w->o->user_base + i);
}

static void group_name(const struct worker *w, char *out)
{
    snprintf(out, NAME_MAX_LEN, "g%s", w->o->run);
}

static void publish(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    uint8_t payload[DRV_PAYLOAD];
    char target[NAME_MAX_LEN];
    bool group = w->o->scenario == GEN_FANOUT;

    if (group)
        group_name(w, target);
    else
        user_name(w, target, i + 1);
    if (group && c->seq >= w->o->max_messages)
        return;
    struct drv_stamp s = {.seq = c->seq++, .sender = i, .sent_ns = clock_mono_ns()};
    drv_stamp_write(payload, &s);
    w->o->drv->publish(&c->out, group, target, payload, s.seq);
    c->inflight++;
    w->st->sent++;
}

static uint32_t fanout_inflight(struct worker *w, struct conn *c)
{
    uint64_t done = atomic_load_explicit(&w->sh->completed, memory_order_acquire);
    return c->seq > done ? (uint32_t)(c->seq - done) : 0;
}

/* Closed loop: tops the sender's window up. */
static void sender_fill(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    if (c->state != C_READY || w->o->rate > 0 || phase(w) != GEN_RUN)
        return;
    if (w->o->scenario == GEN_FANOUT)
        c->inflight = fanout_inflight(w, c);
    while (c->inflight < w->o->window) {
        uint64_t before = c->seq;
        publish(w, i);
        if (c->seq == before)
            break;
    }
    conn_flush(w, i);
}

static void ping_send(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    c->ping_ns = clock_mono_ns();
    w->o->drv->ping(&c->out);
    c->inflight = 1;
}

/* Fan-out setup: one group request of up to GROUP_CHUNK subscribers. */
static void setup_next(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    static char names[GROUP_CHUNK][NAME_MAX_LEN];
    const char *members[GROUP_CHUNK];
    char group[NAME_MAX_LEN];
    unsigned n = 0;

    if (!w->o->drv->group_add || w->group_next >= w->o->conns) {
        c->state = C_READY;
        w->in_progress--;
        w->st->ready++;
        atomic_store(&w->sh->setup_done, 1);
        return;
    }
    group_name(w, group);
    while (n < GROUP_CHUNK && w->group_next < w->o->conns) {
        user_name(w, names[n], w->group_next++);
        members[n] = names[n];
        n++;
    }
    w->o->drv->group_add(&c->out, group, w->group_next - n == 1, members, n);
    c->state = C_SETUP;
}

/* The step after login or subscribe completed. */
static void advance(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    char topic[NAME_MAX_LEN];
    size_t before = c->out.len;

    if (c->state == C_LOGIN && c->role == R_SUBSCRIBER) {
        if (w->o->scenario == GEN_FANOUT)
            group_name(w, topic);
        else
            user_name(w, topic, i);
        w->o->drv->subscribe(&c->out, topic);
        c->state = C_SUBSCRIBE;
        if (c->out.len > before)
            return;
    }
    if (c->state == C_LOGIN && w->o->scenario == GEN_FANOUT && c->role == R_SENDER) {
        w->group_next = 1;
        setup_next(w, i);
        return;
    }
    c->state = C_READY;
    w->in_progress--;
    w->st->ready++;
}

static void on_msg(struct worker *w, const struct drv_ev *ev)
{
    struct drv_stamp s;
    if (drv_stamp_read(ev->payload, ev->payload_len, &s) < 0 || phase(w) != GEN_RUN)
        return;
    uint64_t now = clock_mono_ns();
    w->st->received++;
    hist_add(&w->st->lat, now > s.sent_ns ? now - s.sent_ns : 0);
    if (w->o->scenario == GEN_FANOUT) {
        if (s.seq >= w->o->max_messages)
            return;
        uint32_t got = atomic_fetch_add(&w->sh->delivered[s.seq], 1) + 1;
        if (got == w->subscribers) {
            uint64_t one = 1;
            atomic_fetch_add(&w->sh->completed, 1);
            if (write(w->sh->efd, &one, sizeof(one)) < 0)
                note_error(w, "eventfd write");
        }
    } else if (w->o->scenario == GEN_PAIRS && s.sender >= w->lo && s.sender < w->hi) {
        struct conn *snd = &w->c[s.sender - w->lo];
        if (snd->inflight)
            snd->inflight--;
        sender_fill(w, s.sender);
    }
}

static void on_event(struct worker *w, uint32_t i, const struct drv_ev *ev)
{
    struct conn *c = &w->c[i - w->lo];
    switch (ev->kind) {
    case DRV_EV_READY:
    case DRV_EV_PONG:
        if (c->state == C_LOGIN || c->state == C_SUBSCRIBE) {
            advance(w, i);
        } else if (ev->kind == DRV_EV_PONG && c->role == R_PINGER && c->inflight) {
            c->inflight = 0;
            if (phase(w) == GEN_RUN) {
                w->st->pongs++;
                hist_add(&w->st->lat, clock_mono_ns() - c->ping_ns);
                ping_send(w, i);
            }
        }
        break;
    case DRV_EV_ACK:
        if (c->state == C_SETUP)
            setup_next(w, i);
        else if (phase(w) == GEN_RUN)
            w->st->acks++;
        break;
    case DRV_EV_MSG:
        on_msg(w, ev);
        break;
    case DRV_EV_ERROR:
        w->st->errors++;
        note_error(w, ev->what);
        if (c->state == C_SETUP) {
            atomic_store(&w->sh->setup_done, -1);
            conn_fail(w, i, ev->what);
        } else if (c->state == C_LOGIN || c->state == C_SUBSCRIBE) {
            conn_fail(w, i, ev->what);
        }
        break;
    case DRV_EV_PINGED:
        if (w->o->drv->pong)
            w->o->drv->pong(&c->out);
        break;
    default:
        break;
    }
}

/* Parses every whole event of p[0..n); returns the bytes used or -1 (failed). */
static long parse_all(struct worker *w, uint32_t i, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n && w->c[i - w->lo].state != C_DEAD) {
        struct drv_ev ev = {0};
        long used = w->o->drv->parse(p + off, n - off, &ev);
        if (used < 0) {
            conn_fail(w, i, "malformed input from the server");
            return -1;
        }
        if (used == 0)
            break;
        off += (size_t)used;
        on_event(w, i, &ev);
    }
    return (long)off;
}

static void on_readable(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
        if (n == 0) {
            conn_fail(w, i, "closed by the server");
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_fail(w, i, strerror(errno));
            break;
        }
        const uint8_t *p = w->rbuf;
        size_t len = (size_t)n;
        if (c->in.len) {
            buf_append(&c->in, w->rbuf, len);
            p = c->in.data;
            len = c->in.len;
        }
        long used = parse_all(w, i, p, len);
        if (used < 0)
            return;
        if (c->in.len) {
            memmove(c->in.data, c->in.data + used, c->in.len - (size_t)used);
            c->in.len -= (size_t)used;
        } else if ((size_t)used < len) {
            buf_append(&c->in, p + used, len - (size_t)used);
        }
        if ((size_t)n < RBUF_SIZE)
            break;
    }
    conn_flush(w, i);
}

static void conn_start(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int one = 1;

    c->role = role_of(w->o, i);
    c->state = C_CONNECTING;
    w->in_progress++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(w, i, strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    src.sin_addr.s_addr = htonl(0x7f000002u + i % w->o->nsrc);
    dst.sin_addr.s_addr = htonl(0x7f000001u);
    dst.sin_port = htons(w->o->port);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
        conn_fail(w, i, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
    c->want_out = true;
    epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_connected(struct worker *w, uint32_t i)
{
    struct conn *c = &w->c[i - w->lo];
    char user[NAME_MAX_LEN];
    int err = 0;
    socklen_t len = sizeof(err);

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_fail(w, i, strerror(err));
        return;
    }
    user_name(w, user, i);
    c->state = C_LOGIN;
    size_t before = c->out.len;
    w->o->drv->login(&c->out, &w->o->cfg, user);
    if (c->out.len == before)
        advance(w, i);
    conn_flush(w, i);
    set_events(w, i, c->out.len > 0);
}

static void on_ready_io(struct worker *w, uint32_t i, uint32_t events)
{
    struct conn *c = &w->c[i - w->lo];
    if (c->state == C_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(w, i);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(w, i);
    if (c->state != C_DEAD && (events & EPOLLOUT))
        conn_flush(w, i);
}

/* GEN_RUN begins: start every sender's and pinger's load. */
static void load_start(struct worker *w)
{
    for (uint32_t i = w->lo; i < w->hi; i++) {
        struct conn *c = &w->c[i - w->lo];
        if (c->state != C_READY)
            continue;
        if (c->role == R_PINGER) {
            ping_send(w, i);
            conn_flush(w, i);
        } else if (c->role == R_SENDER) {
            if (w->o->rate > 0)
                w->senders[w->nsenders++] = i;
            else
                sender_fill(w, i);
        }
    }
    if (w->o->rate > 0 && w->nsenders) {
        uint32_t total = w->o->scenario == GEN_FANOUT ? 1 : w->o->conns / 2;
        double local_rate = w->o->rate * w->nsenders / total;
        w->interval_ns = (uint64_t)(1e9 / local_rate);
        w->next_send_ns = clock_mono_ns();
    }
}

/* Rate mode: the sends that are due; returns ms until the next one. */
static int rate_tick(struct worker *w)
{
    uint64_t now = clock_mono_ns();
    while (w->nsenders && now >= w->next_send_ns) {
        uint32_t i = w->senders[w->rr++ % w->nsenders];
        struct conn *c = &w->c[i - w->lo];
        w->next_send_ns += w->interval_ns;
        if (c->state != C_READY)
            continue;
        if (w->o->scenario == GEN_FANOUT)
            c->inflight = fanout_inflight(w, c);
        if (c->inflight >= w->o->window) {
            w->st->skipped++;
            continue;
        }
        publish(w, i);
        conn_flush(w, i);
    }
    if (!w->nsenders)
        return 10;
    uint64_t wait = w->next_send_ns > now ? w->next_send_ns - now : 0;
    return (int)(wait / 1000000);
}

static void on_efd(struct worker *w)
{
    uint64_t v;
    if (read(w->sh->efd, &v, sizeof(v)) < 0)
        return;
    if (w->lo == 0 && w->o->scenario == GEN_FANOUT)
        sender_fill(w, 0);
}

static int worker_init(struct worker *w, struct gen_shared *sh, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->sh = sh;
    w->o = &sh->opts;
    w->st = &sh->w[id];
    w->id = id;
    gen_slice(w->o, id, &w->lo, &w->hi);
    w->subscribers = w->o->conns - 1;
    w->c = calloc(w->hi - w->lo + 1, sizeof(*w->c));
    w->senders = calloc(w->hi - w->lo + 1, sizeof(*w->senders));
    w->rbuf = malloc(RBUF_SIZE);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!w->c || !w->senders || !w->rbuf || w->ep < 0)
        return -ENOMEM;
    for (uint32_t i = w->lo; i < w->hi; i++) {
        w->c[i - w->lo].fd = -1;
        buf_init(&w->c[i - w->lo].out);
        buf_init(&w->c[i - w->lo].in);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EFD_TAG};
    if (w->o->scenario == GEN_FANOUT && w->lo == 0)
        epoll_ctl(w->ep, EPOLL_CTL_ADD, sh->efd, &ev);
    w->next_connect = w->lo;
    return 0;
}

int gen_worker_run(struct gen_shared *sh, unsigned id)
{
    static struct worker w;
    struct epoll_event evs[EPOLL_EVENTS];
    bool started = false;

    if (worker_init(&w, sh, id) < 0) {
        note_error(&w, "worker start-up failed");
        return 1;
    }
    /* The fan-out publisher is the only connection of the setup phase. */
    if (sh->opts.scenario == GEN_FANOUT && w.lo == 0 && w.hi > 0) {
        conn_start(&w, 0);
        w.next_connect = 1;
    }
    for (;;) {
        int ph = phase(&w);
        if (ph == GEN_STOP)
            break;
        if (ph >= GEN_CONNECT) {
            while (w.next_connect < w.hi && w.in_progress < sh->opts.burst)
                conn_start(&w, w.next_connect++);
        }
        int timeout = 10;
        if (ph == GEN_RUN) {
            if (!started) {
                load_start(&w);
                started = true;
            }
            if (sh->opts.rate > 0) {
                int t = rate_tick(&w);
                timeout = t < timeout ? t : timeout;
            }
        }
        int n = epoll_wait(w.ep, evs, EPOLL_EVENTS, timeout);
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u32 == EFD_TAG)
                on_efd(&w);
            else
                on_ready_io(&w, evs[k].data.u32, evs[k].events);
        }
        /* Unacknowledged protocols complete fan-out messages in other workers. */
        if (ph == GEN_RUN && sh->opts.scenario == GEN_FANOUT && w.lo == 0)
            sender_fill(&w, 0);
    }
    atomic_thread_fence(memory_order_release);
    w.st->done = 1;
    return 0;
}
