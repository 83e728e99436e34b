/*
 * MQTT 3.1.1 driver, QoS 0 only. Login is CONNECT with a clean session, the
 * user as client id and keep-alive 0 (the server never times the client out);
 * CONNACK with return code 0 completes it. Subscribe asks for QoS 0 and
 * completes with SUBACK. PINGREQ/PINGRESP is the round trip.
 */
#include "drv.h"

#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Appends the fixed header: type/flags byte and the remaining length. */
static void put_fixed(struct buf *out, uint8_t type, size_t remaining)
{
    buf_put_u8(out, type);
    do {
        uint8_t b = remaining & 0x7f;
        remaining >>= 7;
        buf_put_u8(out, (uint8_t)(remaining ? b | 0x80 : b));
    } while (remaining);
}

static void put_str(struct buf *out, const char *s)
{
    size_t n = strlen(s);
    buf_put_be16(out, (uint16_t)n);
    buf_append(out, s, n);
}

static int mqtt_login(struct buf *out, const struct drv_cfg *cfg, const char *user)
{
    put_fixed(out, 0x10, 10 + 2 + strlen(user));
    put_str(out, "MQTT");
    buf_put_u8(out, 4);    /* protocol level 3.1.1 */
    buf_put_u8(out, 0x02); /* clean session */
    buf_put_be16(out, 0);  /* keep-alive off */
    put_str(out, user);
    return buf_failed(out) ? -ENOMEM : 0;
}

static int mqtt_subscribe(struct buf *out, const char *topic)
{
    put_fixed(out, 0x82, 2 + 2 + strlen(topic) + 1);
    buf_put_be16(out, 1); /* packet id */
    put_str(out, topic);
    buf_put_u8(out, 0); /* QoS 0 */
    return buf_failed(out) ? -ENOMEM : 0;
}

static int mqtt_publish(struct buf *out, bool group, const char *target, const uint8_t *payload,
                        uint64_t seq)
{
    put_fixed(out, 0x30, 2 + strlen(target) + DRV_PAYLOAD);
    put_str(out, target);
    buf_append(out, payload, DRV_PAYLOAD);
    return buf_failed(out) ? -ENOMEM : 0;
}

static int mqtt_ping(struct buf *out)
{
    return buf_append(out, "\xc0\x00", 2);
}

static long mqtt_parse(const uint8_t *in, size_t len, struct drv_ev *ev)
{
    size_t remaining = 0, at = 1;
    unsigned shift = 0;
    for (;;) {
        if (at >= len)
            return 0;
        if (at > 4)
            return -RP_EFRAME;
        uint8_t b = in[at++];
        remaining |= (size_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    if (len - at < remaining)
        return 0;
    const uint8_t *body = in + at;
    ev->kind = DRV_EV_NONE;
    switch (in[0] >> 4) {
    case 2: /* CONNACK */
        if (remaining >= 2 && body[1] == 0)
            ev->kind = DRV_EV_READY;
        else {
            ev->kind = DRV_EV_ERROR;
            snprintf(ev->what, sizeof(ev->what), "connack %d", remaining >= 2 ? body[1] : -1);
        }
        break;
    case 9: /* SUBACK */
        if (remaining >= 3 && body[2] != 0x80)
            ev->kind = DRV_EV_READY;
        else {
            ev->kind = DRV_EV_ERROR;
            snprintf(ev->what, sizeof(ev->what), "suback refused");
        }
        break;
    case 13: /* PINGRESP */
        ev->kind = DRV_EV_PONG;
        break;
    case 3: { /* PUBLISH */
        if (remaining < 2)
            return -RP_EFRAME;
        size_t skip = 2 + ((size_t)body[0] << 8 | body[1]);
        if ((in[0] >> 1) & 3)
            skip += 2; /* packet id, QoS > 0 */
        if (skip > remaining)
            return -RP_EFRAME;
        ev->kind = DRV_EV_MSG;
        ev->payload = body + skip;
        ev->payload_len = remaining - skip;
        break;
    }
    default:
        break;
    }
    return (long)(at + remaining);
}

const struct drv drv_mqtt = {
    .name = "mqtt",
    .acks = false,
    .login = mqtt_login,
    .subscribe = mqtt_subscribe,
    .publish = mqtt_publish,
    .ping = mqtt_ping,
    .parse = mqtt_parse,
};
