/*
 * Redis driver: RESP2 pub/sub. Login writes nothing (no AUTH: the server runs
 * without a password on loopback). A subscribed connection receives
 * `*3 message <channel> <payload>`; PUBLISH answers with the number of
 * receivers, which is the acknowledgement. Channels stand in for both users
 * (direct) and groups.
 */
#include "drv.h"

#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put_bulk(struct buf *out, const void *p, size_t n)
{
    char head[32];
    int k = snprintf(head, sizeof(head), "$%zu\r\n", n);
    buf_append(out, head, (size_t)k);
    buf_append(out, p, n);
    return buf_append(out, "\r\n", 2);
}

static int put_command(struct buf *out, unsigned argc, const char *const *argv, const size_t *len)
{
    char head[16];
    int k = snprintf(head, sizeof(head), "*%u\r\n", argc);
    buf_append(out, head, (size_t)k);
    for (unsigned i = 0; i < argc; i++)
        put_bulk(out, argv[i], len[i]);
    return buf_failed(out) ? -ENOMEM : 0;
}

static int redis_login(struct buf *out, const struct drv_cfg *cfg, const char *user)
{
    return 0;
}

static int redis_subscribe(struct buf *out, const char *topic)
{
    const char *argv[] = {"SUBSCRIBE", topic};
    size_t len[] = {9, strlen(topic)};
    return put_command(out, 2, argv, len);
}

static int redis_publish(struct buf *out, bool group, const char *target, const uint8_t *payload,
                         uint64_t seq)
{
    const char *argv[] = {"PUBLISH", target, (const char *)payload};
    size_t len[] = {7, strlen(target), DRV_PAYLOAD};
    return put_command(out, 3, argv, len);
}

static int redis_ping(struct buf *out)
{
    return buf_append(out, "PING\r\n", 6);
}

/* The end of the line starting at p, or NULL when it is not complete yet. */
static const uint8_t *line_end(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    return nl && nl > p && nl[-1] == '\r' ? nl + 1 : NULL;
}

/*
 * One element of an array reply: a bulk string or an integer. *data and *n view a
 * bulk; for an integer *n is the value and *data NULL. Returns the bytes used,
 * 0 for incomplete, -RP_EFRAME.
 */
static long element(const uint8_t *p, const uint8_t *end, const uint8_t **data, size_t *n)
{
    const uint8_t *le = line_end(p, end);
    if (!le)
        return 0;
    long long v = strtoll((const char *)p + 1, NULL, 10);
    if (*p == ':') {
        *data = NULL;
        *n = (size_t)v;
        return le - p;
    }
    if (*p != '$' || v < 0)
        return -RP_EFRAME;
    if (end - le < v + 2)
        return 0;
    *data = le;
    *n = (size_t)v;
    return (le - p) + v + 2;
}

static long redis_parse(const uint8_t *in, size_t len, struct drv_ev *ev)
{
    const uint8_t *end = in + len, *le;
    if (len < 3)
        return 0;
    if (!(le = line_end(in, end)))
        return 0;
    ev->kind = DRV_EV_NONE;
    switch (in[0]) {
    case '+':
        if (le - in == 7 && memcmp(in, "+PONG", 5) == 0)
            ev->kind = DRV_EV_PONG;
        return le - in;
    case '-':
        ev->kind = DRV_EV_ERROR;
        snprintf(ev->what, sizeof(ev->what), "%.*s", (int)(le - in - 3), in + 1);
        return le - in;
    case ':':
        ev->kind = DRV_EV_ACK;
        ev->n = strtoull((const char *)in + 1, NULL, 10);
        return le - in;
    case '*':
        break;
    default:
        return -RP_EFRAME;
    }
    long count = strtol((const char *)in + 1, NULL, 10);
    const uint8_t *p = le, *data[3] = {0};
    size_t n[3] = {0};
    if (count < 1 || count > 3)
        return -RP_EFRAME;
    for (long i = 0; i < count; i++) {
        long used = element(p, end, &data[i], &n[i]);
        if (used <= 0)
            return used;
        p += used;
    }
    if (data[0] && n[0] == 7 && memcmp(data[0], "message", 7) == 0 && count == 3 && data[2]) {
        ev->kind = DRV_EV_MSG;
        ev->payload = data[2];
        ev->payload_len = n[2];
    } else if (data[0] && n[0] == 9 && memcmp(data[0], "subscribe", 9) == 0) {
        ev->kind = DRV_EV_READY;
    }
    return p - in;
}

const struct drv drv_redis = {
    .name = "redis",
    .acks = true,
    .login = redis_login,
    .subscribe = redis_subscribe,
    .publish = redis_publish,
    .ping = redis_ping,
    .parse = redis_parse,
};
