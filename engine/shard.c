/*
 * The shard loop and the resources it owns: the io_uring, the listener, the
 * provided receive buffers, the eventfd and the cross-shard ring ends.
 *
 * Waking. A shard blocks in io_uring_enter only after announcing it through
 * its `wake` word (base/wake.h) and re-checking its inboxes. A peer shard that
 * publishes to it afterwards sees the announcement and posts one MSG_RING
 * data completion into its ring; a storage thread writes its eventfd. A busy
 * shard is never sent a wake-up.
 */
#define _GNU_SOURCE
#include "engine/shard.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "engine/admin/admin.h"
#include "engine/server.h"
#include "engine/uring.h"
#include "engine/xkind.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

/* The accept queue asked for: the kernel caps it at net.core.somaxconn, which
 * operations.md raises for reconnect storms. */
#define LISTEN_BACKLOG 65535

#define REAP_BATCH    256u
#define XCORE_BUDGET  4096u
#define STORAGE_BATCH 64u
#define STOP_GRACE_MS 4000u

unsigned shard_of(const struct server *srv, const char *id, size_t len)
{
    return (unsigned)(hash_bytes(id, len) % srv->nshards);
}

/* ---- chat env: what the chat layer may ask of the runtime ---- */

/* The live home connection named by id, or NULL. */
static struct conn *home_conn(struct shard *sh, conn_id_t id)
{
    struct conn *c = conn_get(sh, id);
    return c && c->state == CONN_HOME ? c : NULL;
}

static int env_send(void *rt, conn_id_t id, struct rbuf *frame)
{
    struct conn *c = home_conn(rt, id);
    return c ? conn_send(rt, c, frame) : -ENOENT;
}

static int env_push(void *rt, conn_id_t id, struct rbuf *frame)
{
    struct conn *c = home_conn(rt, id);
    return c ? conn_push(rt, c, frame) : -ENOENT;
}

static void env_close(void *rt, conn_id_t id, const char *reason)
{
    struct shard *sh = rt;
    struct conn *c = conn_get(sh, id);
    if (c)
        conn_close(sh, c, reason);
}

static void env_ready(void *rt, conn_id_t id)
{
    struct conn *c = home_conn(rt, id);
    if (c)
        conn_ready(rt, c);
}

static void env_hold(void *rt, conn_id_t id)
{
    struct conn *c = home_conn(rt, id);
    if (c)
        conn_hold(rt, c);
}

static bool env_congested(void *rt, conn_id_t id)
{
    struct conn *c = home_conn(rt, id);
    return c && conn_congested(rt, c);
}

static int env_xsend(void *rt, unsigned dst, const struct xmsg *m)
{
    return shard_xsend(rt, dst, m);
}

static int env_write(void *rt, struct stg_batch *b, uint64_t tag)
{
    struct shard *sh = rt;
    return storage_write(sh->srv->storage, sh->id, b, tag);
}

static int env_read(void *rt, const struct stg_read *q, uint64_t tag)
{
    struct shard *sh = rt;
    return storage_read(sh->srv->storage, sh->id, q, tag);
}

static uint64_t env_now_ms(void *rt)
{
    return ((struct shard *)rt)->now_ms;
}

static void env_admin_done(void *rt, uint64_t tag, const struct chat_admin_result *res)
{
    admin_chat_done(rt, tag, res);
}

/* ---- cross-shard rings ---- */

int shard_xsend(struct shard *sh, unsigned dst, const struct xmsg *m)
{
    struct xmsg copy = *m;
    copy.src = (uint16_t)sh->id;
    if (spsc_push(sh->out[dst], &copy)) {
        sh->stats.xcore_full++;
        /* before the loop's last look at the ring (wake_prepare's fence) */
        atomic_store_explicit(&sh->room_wanted[dst], true, memory_order_relaxed);
        return -RP_EFULL;
    }
    sh->out_dirty[dst] = true;
    return 0;
}

static void wake_shard(struct shard *sh, unsigned dst)
{
    struct shard *peer = &sh->srv->shards[dst];
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_msg_ring(sqe, peer->ring_fd, 0, ud_pack(UOP_WAKE, sh->id, 0), 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
}

/* Slots of the ring from shard src were freed: if src has a message waiting
 * for them and may be asleep, wake it. Either src's last look before sleeping
 * sees the room, or this sees both its flag and its sleep (the fences of
 * wake_prepare and here order the stores and loads on both sides). */
static void xcore_room_freed(struct shard *sh, unsigned src)
{
    struct shard *peer = &sh->srv->shards[src];
    atomic_thread_fence(memory_order_seq_cst);
    /* taken in one step: a flag set again meanwhile is not wiped unseen */
    if (!atomic_load_explicit(&peer->room_wanted[sh->id], memory_order_relaxed) ||
        !atomic_exchange_explicit(&peer->room_wanted[sh->id], false, memory_order_acq_rel))
        return;
    if (wake_needed(&peer->wake))
        wake_shard(sh, src);
}

static void xcore_publish(struct shard *sh)
{
    unsigned n = sh->srv->nshards;
    for (unsigned d = 0; d < n; d++) {
        if (!sh->out_dirty[d])
            continue;
        sh->out_dirty[d] = false;
        spsc_publish(sh->out[d]);
        struct shard *peer = &sh->srv->shards[d];
        if (d != sh->id && wake_needed(&peer->wake))
            wake_shard(sh, d);
    }
}

static void xmsg_dispatch(struct shard *sh, const struct xmsg *m)
{
    if (m->kind >= XMSG_CHAT_BASE) {
        chat_on_xmsg(sh->chat, m);
        return;
    }
    switch (m->kind) {
    case XK_ADOPT:
        if (sh->stopping) {
            struct handoff *ho = m->ptr;
            handoff_free(ho);
        } else {
            conn_adopt(sh, m->ptr);
        }
        break;
    default:
        log_error("xmsg_unknown", "kind=%u src=%u", m->kind, m->src);
    }
}

static void set_quiet(struct shard *sh, bool quiet);

/* Handle what the other shards sent: with all, every message published so
 * far, else at most XCORE_BUDGET per ring. Returns how many were handled. */
static unsigned xcore_drain(struct shard *sh, bool all)
{
    unsigned total = 0;
    for (unsigned s = 0; s < sh->srv->nshards; s++) {
        struct spsc *r = sh->in[s];
        uint32_t n = spsc_readable(r);
        if (!n)
            continue;
        /* Counted, so still in the ring for the others to see: the shard
         * stops counting itself quiet before it takes them (see all_quiet). */
        set_quiet(sh, false);
        if (!all && n > XCORE_BUDGET)
            n = XCORE_BUDGET;
        uint32_t i = 0;
        struct xmsg *m;
        while (i < n && (m = spsc_front(r))) {
            struct xmsg copy = *m;
            spsc_pop(r);
            xmsg_dispatch(sh, &copy);
            i++;
        }
        spsc_release(r);
        if (s != sh->id)
            xcore_room_freed(sh, s);
        total += i;
    }
    return total;
}

static unsigned storage_drain(struct shard *sh)
{
    struct stg_done done[STORAGE_BATCH];
    unsigned total = 0, n;
    do {
        n = storage_poll(sh->srv->storage, sh->id, done, STORAGE_BATCH);
        for (unsigned i = 0; i < n; i++)
            chat_on_storage(sh->chat, &done[i]);
        total += n;
    } while (n == STORAGE_BATCH);
    return total;
}

/* ---- set-up on the shard's own thread ---- */

static int listener_open(struct shard *sh)
{
    const struct config *cfg = sh->cfg;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->bind, &addr.sin_addr) != 1) {
        log_error("listen_failed", "bind=%s reason=\"not an IPv4 address\"", cfg->bind);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY: frames are coalesced per loop
     * iteration already, Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, LISTEN_BACKLOG)) {
        int err = -errno;
        log_error("listen_failed", "bind=%s port=%u err=\"%s\"", cfg->bind, cfg->port,
                  err_str(err));
        close(fd);
        return err;
    }
    sh->listen_fd = fd;
    return 0;
}

static void arm_accept(struct shard *sh)
{
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_multishot_accept_direct(sqe, sh->listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_ACCEPT, 0, 0));
}

static void arm_tick(struct shard *sh)
{
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    sh->tick_ts.tv_sec = 1;
    sh->tick_ts.tv_nsec = 0;
    io_uring_prep_timeout(sqe, &sh->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_TICK, 0, 0));
}

static void arm_eventfd(struct shard *sh)
{
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_read(sqe, sh->event_fd, &sh->event_val, sizeof(sh->event_val), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_EVENTFD, 0, 0));
}

static int ring_setup(struct shard *sh)
{
    int r = uring_setup(&sh->ring, sh->cfg->ring_entries, sh->cfg->ring_entries * 8);
    if (r) {
        log_error("uring_setup_failed", "err=\"%s\"", err_str(r));
        return r;
    }
    r = io_uring_register_files_sparse(&sh->ring, sh->nconns);
    if (r) {
        log_error("register_files_failed", "count=%u err=\"%s\"", sh->nconns, err_str(r));
        return r;
    }
    r = bufring_init(&sh->rb, &sh->ring, sh->cfg->recv_buffers, sh->cfg->recv_buffer_size, 0, true);
    if (r == 0)
        log_info("recv_buffers", "count=%u size=%u incremental=%s", sh->rb.count, sh->rb.size,
                 sh->rb.inc ? "yes" : "no");
    if (r) {
        log_error("buf_ring_failed", "err=\"%s\"", err_str(r));
        return r;
    }
    r = listener_open(sh);
    if (r)
        return r;
    sh->ring_fd = sh->ring.ring_fd;
    if (sh->id == 0 && (r = admin_start(sh)))
        return r;
    if (sh->id == 0 && (r = hello_selftest(sh->cfg, sh->now_ms / 1000u)))
        log_error("jwt_selftest_failed", "err=\"%s\"", err_str(r));
    arm_accept(sh);
    arm_tick(sh);
    arm_eventfd(sh);
    return 0;
}

/* ---- the loop ---- */

/* An accept that failed for want of a resource (a slot of the fixed file
 * table, memory): re-armed at once it would fail again at once, dropping
 * one queued connection each time. */
static bool accept_starved(int res)
{
    return res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS;
}

static void on_accept(struct shard *sh, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (cqe->res < 0 && accept_starved(cqe->res) && !more) {
        /* retried at the next tick, not at once: that would spin */
        /* ENFILE is mostly the fixed file table (max_conns) being full */
        if (!sh->accept_paused)
            log_warn("accept_paused", "err=\"%s\" until=next_tick",
                     cqe->res == -ENFILE
                         ? "no free slot in the connection table (max_conns) or system file table"
                         : err_str(cqe->res));
        sh->accept_paused = true;
        sh->stats.accept_pauses++;
        return;
    }
    if (!more && !sh->stopping)
        arm_accept(sh);
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED)
            log_warn("accept_failed", "err=\"%s\"", err_str(cqe->res));
        return;
    }
    struct conn *c = sh->stopping ? NULL : conn_new(sh, (uint32_t)cqe->res, CONN_EDGE);
    if (!c) { /* closed at once: neither an accept nor a close in the counters */
        struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
        io_uring_prep_close_direct(sqe, (unsigned)cqe->res);
        io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
        return;
    }
    sh->stats.accepts++;
    conn_arm_recv(sh, c);
}

static void begin_stop(struct shard *sh)
{
    if (sh->stopping)
        return;
    sh->stopping = true;
    chat_stop(sh->chat);
    log_info("shard_stopping", "conns=%u", sh->live);
    struct io_uring_sqe *sqe = uring_sqe(&sh->ring);
    io_uring_prep_cancel64(sqe, ud_pack(UOP_ACCEPT, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(UOP_CANCEL, 0, 0));
    if (sh->admin)
        admin_stop(sh);
    for (uint32_t i = 0; i < sh->nconns; i++) {
        struct conn *c = &sh->conns[i];
        if (c->state == CONN_HOME || c->state == CONN_EDGE)
            conn_close(sh, c, "shutdown");
        else if (c->state == CONN_HANDOFF)
            conn_close(sh, c, NULL);
    }
}

/* Handle the first `ready` completions. */
static unsigned reap(struct shard *sh, unsigned ready, bool *ticked)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        if (n == ready)
            break;
        n++;
        switch (ud_op(cqe->user_data)) {
        case UOP_ACCEPT:
            on_accept(sh, cqe);
            break;
        case UOP_RECV:
            conn_on_recv(sh, cqe);
            break;
        case UOP_SEND:
            conn_on_send(sh, cqe);
            break;
        case UOP_SHUTDOWN:
        case UOP_CLOSE:
            conn_on_op(sh, cqe);
            break;
        case UOP_HANDOFF:
            hello_on_handoff(sh, cqe);
            break;
        case UOP_TICK:
            sh->tick++;
            *ticked = true;
            arm_tick(sh);
            if (sh->accept_paused && !sh->stopping) {
                sh->accept_paused = false;
                arm_accept(sh);
            }
            break;
        case UOP_EVENTFD:
            if (atomic_load(&sh->srv->stop))
                begin_stop(sh);
            arm_eventfd(sh);
            break;
        case UOP_ADMIN:
            admin_on_cqe(sh, cqe);
            break;
        case UOP_WAKE:
        case UOP_CANCEL:
        default:
            break;
        }
    }
    io_uring_cq_advance(&sh->ring, n);
    return n;
}

/*
 * Stopping. A shard's last commits may hand work to another: a send made
 * durable moves its author's read cursor, which the author's home shard
 * writes. So a shard leaves only once every shard is quiet at the same time
 * (no connection, nothing chat_quiescent counts: no write or read in flight,
 * no message waiting for room in a ring; nothing unpublished) and every ring
 * between shards is empty. A shard stops counting itself quiet
 * before it takes a message from a ring, so a message being handled keeps
 * the others in; the epoch, bumped on every change, makes the look at all
 * shards one consistent snapshot.
 */
static void set_quiet(struct shard *sh, bool quiet)
{
    if (sh->quiet == quiet)
        return;
    sh->quiet = quiet;
    atomic_fetch_add(&sh->srv->quiet_epoch, 1);
    if (quiet)
        atomic_fetch_add(&sh->srv->nquiet, 1);
    else
        atomic_fetch_sub(&sh->srv->nquiet, 1);
}

static bool all_quiet(struct shard *sh)
{
    struct server *srv = sh->srv;
    bool quiet = sh->live == 0 && chat_quiescent(sh->chat);
    for (unsigned d = 0; d < srv->nshards && quiet; d++)
        quiet = spsc_unpublished(sh->out[d]) == 0;
    set_quiet(sh, quiet);
    if (!quiet)
        return false;
    unsigned epoch = atomic_load(&srv->quiet_epoch);
    if (atomic_load(&srv->nquiet) != srv->nshards)
        return false;
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned i = 0; i < srv->nshards * srv->nshards; i++)
        if (spsc_depth(&srv->rings[i]))
            return false;
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load(&srv->quiet_epoch) == epoch;
}

static void loop(struct shard *sh)
{
    uint64_t stop_at = 0;
    for (;;) {
        sh->now_ms = clock_wall_ms();
        bool ticked = false;
        /* The completions there are now, then every message the other
         * shards have published by now, then those completions: a request
         * read from a client runs after whatever was published to this
         * shard before it arrived, so a member's sync sent once another
         * member's send was acknowledged includes that send. */
        unsigned ready = io_uring_cq_ready(&sh->ring);
        xcore_drain(sh, ready > 0);
        reap(sh, ready, &ticked);
        storage_drain(sh);
        if (ticked) {
            conn_timers(sh);
            chat_on_tick(sh->chat);
            /* A quiet shard's idle connections hold no receive memory. */
            bufring_trim(&sh->rb, &sh->ring, sh->stats.bytes_in);
        }
        hello_handoffs(sh);
        conn_ready_all(sh);
        conn_chat_closes(sh);
        chat_flush(sh->chat);
        conn_flush_all(sh);
        xcore_publish(sh);
        conn_rearm_all(sh);
        conn_ready_all(sh); /* nothing on the ready list may be freed below */
        conn_chat_closes(sh);
        uint32_t live = sh->live;
        conn_free_dead(sh);
        if (sh->accept_paused && sh->live < live && !sh->stopping) {
            /* a connection's slot came free: no need to wait for the tick */
            sh->accept_paused = false;
            arm_accept(sh);
        }

        if (sh->stopping) {
            if (!stop_at)
                stop_at = sh->now_ms + STOP_GRACE_MS;
            if (all_quiet(sh) || sh->now_ms >= stop_at)
                break;
        }
        /* Announce sleep, then look once more at everything that does not
         * come through the ring itself. */
        wake_prepare(&sh->wake);
        /* pushes left for the next pass, or frames queued after the flush
         * phase (replayed requests, closes) */
        bool work = sh->push_head != CONN_NONE || sh->flush_head != CONN_NONE;
        /* (and messages queued for other shards after this pass published,
         * by the closes run last) */
        for (unsigned s = 0; s < sh->srv->nshards && !work; s++)
            work = spsc_front(sh->in[s]) != NULL || sh->out_dirty[s] ||
                   (chat_waits_for_room(sh->chat, s) && spsc_has_room(sh->out[s]));
        if (!work)
            work = storage_drain(sh) > 0 || chat_pending(sh->chat);
        if (work) {
            wake_cancel(&sh->wake);
            /* also runs the completions the kernel deferred to this thread
             * (DEFER_TASKRUN), so requests are read between push batches */
            io_uring_submit_and_get_events(&sh->ring);
            continue;
        }
        int r;
        uint64_t due = chat_next_due(sh->chat);
        if (sh->stopping || due) {
            /* the others' going quiet wakes no one: look again soon; and
             * wake for what the chat layer has due (cursors to write) */
            uint64_t ms = sh->stopping ? 2 : due > sh->now_ms ? due - sh->now_ms : 1;
            struct __kernel_timespec ts = {.tv_sec = (long long)(ms / 1000),
                                           .tv_nsec = (long long)(ms % 1000) * 1000000};
            struct io_uring_cqe *cqe;
            r = io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
        } else {
            r = io_uring_submit_and_wait(&sh->ring, 1);
        }
        wake_cancel(&sh->wake);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            log_error("uring_enter_failed", "err=\"%s\"", err_str(r));
            break;
        }
    }
    log_info("shard_stopped", "conns=%u", sh->live);
}

void *shard_main(void *arg)
{
    struct shard *sh = arg;
    struct server *srv = sh->srv;
    log_set_shard((int)sh->id);
    char name[16];
    snprintf(name, sizeof(name), "rp-shard%u", sh->id % 10000u);
    pthread_setname_np(pthread_self(), name);
    if (sh->cfg->pin && srv->ncpus) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(sh->id % srv->ncpus, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    sh->now_ms = clock_wall_ms();
    if (ring_setup(sh)) {
        atomic_fetch_add(&srv->failed, 1);
        atomic_fetch_add(&srv->ready, 1);
        return NULL;
    }
    atomic_fetch_add(&srv->ready, 1);
    /* Every peer's ring must exist before this shard hands a socket to it. */
    while (atomic_load(&srv->ready) < srv->nshards)
        usleep(1000);
    if (atomic_load(&srv->failed))
        return NULL;
    loop(sh);
    return NULL;
}

/* ---- creation, wake-up, stop ---- */

int shard_init(struct shard *sh, struct server *srv, unsigned id)
{
    memset(sh, 0, sizeof(*sh));
    sh->id = id;
    sh->srv = srv;
    sh->cfg = &srv->cfg;
    sh->listen_fd = -1;
    sh->ring_fd = -1;
    sh->lim.max_body = srv->cfg.max_body;
    sh->lim.max_users = 500;
    struct rlimit rl;
    uint32_t cap = srv->cfg.max_conns;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && cap > rl.rlim_cur)
        cap = (uint32_t)rl.rlim_cur;
    int r = conn_table_init(sh, cap);
    if (r)
        return r;
    sh->event_fd = eventfd(0, EFD_CLOEXEC);
    if (sh->event_fd < 0)
        return -errno;
    req_decoder_init(&sh->dec);
    unsigned n = srv->nshards;
    sh->in = calloc(n, sizeof(*sh->in));
    sh->out = calloc(n, sizeof(*sh->out));
    sh->out_dirty = calloc(n, sizeof(*sh->out_dirty));
    sh->room_wanted = calloc(n, sizeof(*sh->room_wanted));
    if (!sh->in || !sh->out || !sh->out_dirty || !sh->room_wanted)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        sh->in[i] = &srv->rings[i * n + id];
        sh->out[i] = &srv->rings[id * n + i];
    }
    struct chat_env env = {
        .rt = sh,
        .shard = id,
        .nshards = n,
        .cfg = &srv->chat_cfg,
        .send = env_send,
        .push = env_push,
        .close = env_close,
        .ready = env_ready,
        .hold = env_hold,
        .congested = env_congested,
        .xsend = env_xsend,
        .write = env_write,
        .read = env_read,
        .now_ms = env_now_ms,
        .admin_done = env_admin_done,
    };
    sh->chat = chat_new(&env);
    return sh->chat ? 0 : -ENOMEM;
}

/* Messages still in our inbound rings after every shard stopped: free what
 * they carry. */
static void discard_inbox(struct shard *sh)
{
    for (unsigned s = 0; s < sh->srv->nshards; s++) {
        struct spsc *r = sh->in[s];
        struct xmsg *m;
        while ((m = spsc_front(r))) {
            if (m->kind >= XMSG_CHAT_BASE) {
                chat_discard_xmsg(sh->chat, m);
            } else if (m->kind == XK_ADOPT) {
                struct handoff *ho = m->ptr;
                handoff_free(ho);
            }
            spsc_pop(r);
        }
        spsc_release(r);
    }
}

void shard_deinit(struct shard *sh)
{
    if (sh->in)
        discard_inbox(sh);
    if (sh->ring_fd >= 0)
        io_uring_queue_exit(&sh->ring);
    if (sh->admin)
        admin_free(sh);
    if (sh->listen_fd >= 0)
        close(sh->listen_fd);
    if (sh->event_fd > 0)
        close(sh->event_fd);
    bufring_deinit(&sh->rb);
    conn_table_deinit(sh);
    chat_free(sh->chat);
    free(sh->closed);
    free(sh->drained);
    req_decoder_deinit(&sh->dec);
    free(sh->in);
    free(sh->out);
    free(sh->out_dirty);
    free(sh->room_wanted);
}

void shard_notify(struct shard *sh)
{
    if (wake_needed(&sh->wake)) {
        uint64_t one = 1;
        ssize_t w = write(sh->event_fd, &one, sizeof(one));
        (void)w;
    }
}

void shard_stop(struct shard *sh)
{
    uint64_t one = 1;
    ssize_t w = write(sh->event_fd, &one, sizeof(one));
    (void)w;
}
