/*
 * NATS core driver (text protocol). Login is CONNECT (verbose off, echo off)
 * followed by PING; the PONG confirms the server processed the CONNECT.
 * Subscribe is SUB + PING the same way. Publishes are fire-and-forget; the
 * server's keep-alive PINGs are answered with PONG.
 */
#include "drv.h"

#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nats_login(struct buf *out, const struct drv_cfg *cfg, const char *user)
{
    static const char connect[] = "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,"
                                  "\"lang\":\"c\",\"version\":\"1\",\"protocol\":1}\r\nPING\r\n";
    return buf_append(out, connect, sizeof(connect) - 1);
}

static int nats_subscribe(struct buf *out, const char *topic)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "SUB %s 1\r\nPING\r\n", topic);
    return buf_append(out, line, (size_t)n);
}

static int nats_publish(struct buf *out, bool group, const char *target, const uint8_t *payload,
                        uint64_t seq)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "PUB %s %d\r\n", target, DRV_PAYLOAD);
    buf_append(out, line, (size_t)n);
    buf_append(out, payload, DRV_PAYLOAD);
    return buf_append(out, "\r\n", 2);
}

static int nats_ping(struct buf *out)
{
    return buf_append(out, "PING\r\n", 6);
}

static int nats_pong(struct buf *out)
{
    return buf_append(out, "PONG\r\n", 6);
}

static bool starts(const uint8_t *p, size_t n, const char *word)
{
    size_t k = strlen(word);
    return n >= k && memcmp(p, word, k) == 0;
}

static long nats_parse(const uint8_t *in, size_t len, struct drv_ev *ev)
{
    const uint8_t *nl = memchr(in, '\n', len);
    if (!nl)
        return len > 4096 ? -RP_EFRAME : 0;
    size_t line = (size_t)(nl - in) + 1;
    ev->kind = DRV_EV_NONE;
    if (starts(in, line, "MSG ")) {
        /* MSG <subject> <sid> [reply-to] <#bytes>: the size is the last field. */
        const uint8_t *q = nl - 1;
        while (q > in && q[-1] != ' ')
            q--;
        size_t n = strtoul((const char *)q, NULL, 10);
        if (len - line < n + 2)
            return 0;
        ev->kind = DRV_EV_MSG;
        ev->payload = in + line;
        ev->payload_len = n;
        return (long)(line + n + 2);
    }
    if (starts(in, line, "PONG"))
        ev->kind = DRV_EV_PONG;
    else if (starts(in, line, "PING"))
        ev->kind = DRV_EV_PINGED;
    else if (starts(in, line, "-ERR")) {
        ev->kind = DRV_EV_ERROR;
        snprintf(ev->what, sizeof(ev->what), "%.*s", (int)(line - 2), in);
    }
    return (long)line;
}

const struct drv drv_nats = {
    .name = "nats",
    .acks = false,
    .login = nats_login,
    .subscribe = nats_subscribe,
    .publish = nats_publish,
    .ping = nats_ping,
    .pong = nats_pong,
    .parse = nats_parse,
};
