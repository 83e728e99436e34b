/* Provided receive buffers on a real io_uring: a stream of frames of mixed
 * sizes (smaller and larger than a buffer) sent through a socket pair and
 * received with a multishot recv arrives byte for byte, with whole-buffer
 * consumption and with incremental consumption (where consecutive receives
 * share a buffer: completions with IORING_CQE_F_BUF_MORE, and a buffer comes
 * back only once full); trimming between receives releases every page
 * (mincore) without losing a byte, and is refused while a completion is
 * unreaped or after a busy interval. Exits 77 when the kernel has no
 * incremental consumption (after the whole-buffer part passed). */
#define _GNU_SOURCE
#include "engine/bufring.h"
#include "engine/uring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "check.h"

#define NBUF   4u
#define BUFSZ  2048u
#define NMSG   400u
#define MAXMSG 3000u
#define STREAM (NMSG * MAXMSG)
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

struct run {
    struct io_uring ring;
    struct bufring b;
    int fd[2];
    uint8_t *sent, *got;
    size_t nsent, ngot;
    unsigned completions, returns, more, trims;
    bool armed;
};

static void arm(struct run *r)
{
    struct io_uring_sqe *sqe = uring_sqe(&r->ring);
    io_uring_prep_recv_multishot(sqe, r->fd[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, 1);
    r->armed = true;
}

static size_t resident_pages(const struct bufring *b)
{
    size_t pages = b->bytes / 4096, n = 0;
    unsigned char *vec = malloc(pages);
    CHECK(vec && mincore(b->mem, b->bytes, vec) == 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

/* Reaps until every byte sent so far has been received. */
static void drain(struct run *r)
{
    while (r->ngot < r->nsent) {
        if (!r->armed)
            arm(r);
        struct io_uring_cqe *cqe;
        CHECK(io_uring_submit_and_wait(&r->ring, 1) >= 0);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe)
        {
            seen++;
            if (cqe->flags & IORING_CQE_F_BUFFER) {
                const uint8_t *data;
                int n = bufring_data(&r->b, cqe, &data);
                CHECK(n == cqe->res && n > 0);
                CHECK(r->ngot + (size_t)n <= r->nsent);
                memcpy(r->got + r->ngot, data, (size_t)n);
                r->ngot += (size_t)n;
                r->completions++;
                if (cqe->flags & IORING_CQE_F_BUF_MORE)
                    r->more++;
                else
                    r->returns++;
                bufring_done(&r->b, cqe);
            } else {
                CHECK(cqe->res == -ENOBUFS || cqe->res > 0);
            }
            if (!(cqe->flags & IORING_CQE_F_MORE))
                r->armed = false;
        }
        io_uring_cq_advance(&r->ring, seen);
    }
    CHECK(memcmp(r->sent, r->got, r->nsent) == 0);
}

static void send_msg(struct run *r, unsigned i)
{
    size_t len = 1 + (i * 7919u) % MAXMSG; /* smaller and larger than a buffer */
    for (size_t k = 0; k < len; k++)
        r->sent[r->nsent + k] = (uint8_t)(i * 31u + k);
    CHECK(write(r->fd[1], r->sent + r->nsent, len) == (ssize_t)len);
    r->nsent += len;
}

/* Returns whether the kernel consumed incrementally. */
static bool run(bool want_inc)
{
    struct run r;
    memset(&r, 0, sizeof(r));
    CHECK(uring_setup(&r.ring, 64, 256) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, r.fd) == 0);
    CHECK(bufring_init(&r.b, &r.ring, NBUF, BUFSZ, 0, want_inc) == 0);
    CHECK(!r.b.inc || want_inc);
    r.sent = malloc(STREAM);
    r.got = malloc(STREAM);
    CHECK(r.sent && r.got);
    uint64_t rx_total = 0;
    for (unsigned i = 0; i < NMSG; i++) {
        send_msg(&r, i);
        drain(&r);
        {
            /* quiet since the last call: under a quarter of the 8 KiB of
             * buffers, true of the frames below 2 KiB */
            CHECK(resident_pages(&r.b) > 0); /* the last receive wrote one */
            uint64_t before = rx_total;
            rx_total = r.ngot;
            bool quiet = rx_total - before < r.b.bytes / 4;
            bool trimmed = bufring_trim(&r.b, &r.ring, rx_total);
            CHECK(trimmed == quiet);
            if (trimmed) {
                r.trims++;
                CHECK(resident_pages(&r.b) == 0);
            }
        }
    }
    CHECK(r.trims > 10);
    /* busy: a quarter of the buffer memory or more since the last call */
    CHECK(!bufring_trim(&r.b, &r.ring, rx_total + r.b.bytes / 4));
    rx_total += r.b.bytes / 4;
    /* a completion not yet reaped: its bytes would be lost */
    send_msg(&r, 1);
    CHECK(io_uring_submit_and_wait(&r.ring, 1) >= 0);
    CHECK(io_uring_cq_ready(&r.ring) > 0);
    CHECK(!bufring_trim(&r.b, &r.ring, rx_total));
    drain(&r);

    if (r.b.inc) {
        /* receives shared buffers, and a buffer came back only once full */
        CHECK(r.more > 0 && r.completions > r.returns);
        CHECK((size_t)r.returns * BUFSZ <= r.ngot);
    } else {
        CHECK(r.more == 0 && r.returns == r.completions);
    }
    printf("%s: %u completions, %u buffer returns, %u trims, %zu bytes\n",
           r.b.inc ? "incremental" : "whole-buffer", r.completions, r.returns, r.trims, r.ngot);
    bool inc = r.b.inc;
    io_uring_queue_exit(&r.ring);
    bufring_deinit(&r.b);
    close(r.fd[0]);
    close(r.fd[1]);
    free(r.sent);
    free(r.got);
    return inc;
}

int main(void)
{
    struct io_uring probe;
    if (io_uring_queue_init(4, &probe, 0) < 0) {
        printf("test_bufring: skipped (no io_uring)\n");
        return 77;
    }
    io_uring_queue_exit(&probe);
    run(false);
    if (!run(true)) {
        printf(
            "test_bufring: incremental consumption skipped (kernel refuses IOU_PBUF_RING_INC)\n");
        return 77;
    }
    printf("test_bufring: ok\n");
    return 0;
}
