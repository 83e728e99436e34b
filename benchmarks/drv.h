/*
 * drv: one load-generator driver per protocol. A driver only encodes requests
 * into a byte buffer and decodes the server's byte stream into events; the
 * generator (gen.h) owns the sockets, so every protocol is driven by the same
 * loop and the same scenario code.
 *
 * The common vocabulary:
 *  - login: open a session as `user` (ringpush hello with a minted token;
 *    NATS CONNECT; MQTT CONNECT; nothing for Redis). Completes with DRV_EV_READY.
 *  - subscribe: start receiving what is published to `topic`. ringpush has
 *    no subscription: a user receives its direct messages, and group
 *    messages once it is a member, so subscribe writes nothing and the
 *    generator treats it as done at once. Others complete with DRV_EV_READY.
 *  - publish: one message with a 128-byte payload to a user (direct) or a
 *    group/channel. ringpush and Redis acknowledge it (DRV_EV_ACK); NATS core and
 *    MQTT QoS 0 do not.
 *  - ping: one round trip (DRV_EV_PONG).
 *
 * Thread: drivers are stateless apart from the immutable struct drv_cfg given
 * to drv_setup; any number of connections may share one driver.
 */
#ifndef RP_BENCH_DRV_H
#define RP_BENCH_DRV_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRV_PAYLOAD 128 /* bytes of every published message */

enum drv_ev_kind {
    DRV_EV_NONE,  /* a frame the generator does not care about */
    DRV_EV_READY, /* login or subscribe completed */
    DRV_EV_PONG,
    DRV_EV_ACK,    /* a publish was accepted; n = receivers, when the protocol says */
    DRV_EV_MSG,    /* a published message arrived; payload points into the input */
    DRV_EV_ERROR,  /* the server refused something; text in `what` */
    DRV_EV_PINGED, /* the server asks for a pong (NATS keep-alive): answer with pong() */
};

struct drv_ev {
    enum drv_ev_kind kind;
    const uint8_t *payload; /* DRV_EV_MSG: the message body, payload_len bytes */
    size_t payload_len;
    uint64_t n;
    char what[64];
};

struct drv_cfg {
    const char *secret; /* ringpush: the JWT HS256 key */
};

struct drv {
    const char *name;
    bool acks; /* publish gets DRV_EV_ACK */
    /* Each encoder appends to out and returns 0 or -ENOMEM (from buf). */
    int (*login)(struct buf *out, const struct drv_cfg *cfg, const char *user);
    int (*subscribe)(struct buf *out, const char *topic);
    int (*publish)(struct buf *out, bool group, const char *target, const uint8_t *payload,
                   uint64_t seq);
    int (*ping)(struct buf *out);
    /* The answer to DRV_EV_PINGED; NULL where the server never pings. */
    int (*pong)(struct buf *out);
    /*
     * Decodes the first event of in[0..len): the bytes it used (> 0), 0 when
     * in holds only part of an event, or -RP_EFRAME for bytes that break the
     * protocol. ev->payload is a view into in.
     */
    long (*parse)(const uint8_t *in, size_t len, struct drv_ev *ev);
    /* ringpush only (NULL elsewhere): make `members` users members of group
     * `group`, created when `create`; completes with DRV_EV_ACK. */
    int (*group_add)(struct buf *out, const char *group, bool create, const char *const *members,
                     unsigned n);
};

extern const struct drv drv_ringpush;
extern const struct drv drv_redis;
extern const struct drv drv_nats;
extern const struct drv drv_mqtt;

/* The driver named `name` ("ringpush", "redis", "nats", "mqtt"), or NULL. */
const struct drv *drv_find(const char *name);

/*
 * The payload every driver publishes: a magic, the message's sequence number in
 * its stream, the sender's index and the send time (CLOCK_MONOTONIC ns, which all
 * worker processes share), then padding up to DRV_PAYLOAD bytes.
 */
struct drv_stamp {
    uint64_t seq;
    uint32_t sender;
    uint64_t sent_ns;
};

void drv_stamp_write(uint8_t out[DRV_PAYLOAD], const struct drv_stamp *s);

/* 0 and *s filled, or -RP_EFRAME for a payload that is not a stamp. */
int drv_stamp_read(const uint8_t *p, size_t len, struct drv_stamp *s);

#endif
