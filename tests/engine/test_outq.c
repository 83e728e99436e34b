/*
 * The outbound queue of one connection, driven on a real socket pair and a
 * real ring (engine/conn.c). An overflow (`bye slow`) that comes between two
 * sends, after a short send left the head frame half written, keeps the rest
 * of that frame: the client reads whole frames up to the bye. The pushes
 * queued and not yet sent are dropped, the replies among them are not: the
 * bye comes right behind them.
 */
#define _GNU_SOURCE /* memmem */
#include "engine/conn.h"
#include "engine/shard.h"
#include "engine/uring.h"

#include "base/rbuf.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define SMALL_BUF 4096
#define FRAME_LEN 3000

/* A frame of plen payload bytes: {"p": <plen - 6 bytes of fill>}. */
static struct rbuf *frame_new(uint32_t plen, uint8_t fill)
{
    uint32_t slen = plen - 6;
    struct rbuf *b = rbuf_new(4 + plen);
    CHECK(b != NULL);
    uint8_t *p = b->data;
    p[0] = (uint8_t)(plen >> 24);
    p[1] = (uint8_t)(plen >> 16);
    p[2] = (uint8_t)(plen >> 8);
    p[3] = (uint8_t)plen;
    p[4] = 0x81; /* map of one */
    p[5] = 0xa1; /* "p" */
    p[6] = 'p';
    p[7] = 0xda; /* str16 */
    p[8] = (uint8_t)(slen >> 8);
    p[9] = (uint8_t)slen;
    memset(p + 10, fill, slen);
    return b;
}

static void reap(struct shard *sh)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe)
    {
        n++;
        switch (ud_op(cqe->user_data)) {
        case UOP_SEND:
            conn_on_send(sh, cqe);
            break;
        case UOP_SHUTDOWN:
        case UOP_CLOSE:
            conn_on_op(sh, cqe);
            break;
        default:
            break;
        }
    }
    io_uring_cq_advance(&sh->ring, n);
}

/* A connected pair on loopback with small buffers; *srv is the server side. */
static int socket_pair(int *srv)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0), small = SMALL_BUF;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ls, 1) == 0);
    CHECK(getsockname(ls, (struct sockaddr *)&a, &al) == 0);
    int cli = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(setsockopt(cli, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
    CHECK(connect(cli, (struct sockaddr *)&a, sizeof(a)) == 0);
    *srv = accept(ls, NULL, NULL);
    CHECK(*srv >= 0 && setsockopt(*srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
    close(ls);
    return cli;
}

/*
 * On connection slot `slot`: pushes until one is half written, then (with
 * reply) pushes 'Y', a reply 'R' and pushes 'Z' until the queue overflows.
 * The client reads whole frames: what was sent before the overflow, the
 * reply, and the bye last; no 'Y' or 'Z' push.
 */
static void overflow(struct shard *sh, int slot, bool reply)
{
    int srv, cli = socket_pair(&srv);
    CHECK(io_uring_register_files_update(&sh->ring, (unsigned)slot, &srv, 1) == 1);
    struct conn *c = conn_new(sh, (uint32_t)slot, CONN_HOME);
    CHECK(c != NULL);

    /* frames one by one until a send comes back short: its frame is at the
     * head, partly written, and nothing is in flight */
    int k = 0;
    while (!(c->oq && c->oq->n && c->oq->items[c->oq->head].off)) {
        CHECK(k < 64);
        struct rbuf *f = frame_new(FRAME_LEN, (uint8_t)('a' + k++ % 26));
        CHECK(conn_push(sh, c, f) == 0);
        rbuf_unref(f);
        conn_flush_all(sh);
        io_uring_submit_and_wait(&sh->ring, 1);
        reap(sh);
    }
    CHECK(!(c->flags & CONN_F_SEND));
    /* more frames in the same pass, until the queue overflows */
    if (reply) {
        for (int i = 0; i < 2; i++) {
            struct rbuf *f = frame_new(FRAME_LEN, 'Y');
            CHECK(conn_push(sh, c, f) == 0);
            rbuf_unref(f);
        }
        struct rbuf *f = frame_new(100, 'R');
        CHECK(conn_send(sh, c, f) == 0);
        rbuf_unref(f);
    }
    int r;
    do {
        struct rbuf *f = frame_new(FRAME_LEN, 'Z');
        r = conn_push(sh, c, f);
        rbuf_unref(f);
    } while (r == 0);
    CHECK(c->state == CONN_CLOSING);

    /* the client reads everything until the close */
    CHECK(fcntl(cli, F_SETFL, O_NONBLOCK) == 0);
    size_t cap = 1u << 20, len = 0;
    uint8_t *buf = malloc(cap);
    CHECK(buf != NULL);
    for (int i = 0; i < 5000 && buf; i++) {
        conn_flush_all(sh);
        io_uring_submit(&sh->ring);
        ssize_t n = read(cli, buf + len, cap - len);
        if (n == 0)
            break;
        if (n > 0)
            len += (size_t)n;
        reap(sh);
        usleep(1000);
    }
    /* whole frames, each a map, the last one the bye */
    size_t i = 0, last = 0;
    int replies = 0;
    while (len - i >= 4) {
        uint32_t n = (uint32_t)buf[i] << 24 | (uint32_t)buf[i + 1] << 16 |
                     (uint32_t)buf[i + 2] << 8 | buf[i + 3];
        CHECK(n <= len - i - 4);
        if (n > len - i - 4)
            break;
        CHECK(n > 0 && (buf[i + 4] & 0xf0) == 0x80);
        if (n > 6 && buf[i + 4 + 3] == 0xda) { /* a frame_new frame: its fill byte */
            uint8_t fill = buf[i + 4 + 6];
            CHECK(fill != 'Y' && fill != 'Z');
            replies += fill == 'R';
        }
        last = i;
        i += 4 + n;
    }
    CHECK(i == len && len > 0);
    CHECK(replies == (reply ? 1 : 0));
    CHECK(memmem(buf + last, len - last, "slow", 4) != NULL);
    free(buf);
    close(cli);
}

int main(void)
{
    static struct config cfg;
    static struct shard sh;
    cfg.outbound_limit = 16384;
    cfg.max_frame = 65536;
    sh.cfg = &cfg;
    CHECK(conn_table_init(&sh, 8) == 0);
    if (io_uring_queue_init(64, &sh.ring, 0) != 0 ||
        io_uring_register_files_sparse(&sh.ring, 8) != 0) {
        printf("skipped: no io_uring\n");
        return 77;
    }
    overflow(&sh, 0, false);
    overflow(&sh, 1, true);
    printf("ok\n");
    return 0;
}
