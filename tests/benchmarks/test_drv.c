/*
 * Load-generator drivers: each driver's parser is fed what its server sends
 * (a message delivery, a pong, an acknowledgement, an error), whole and then
 * one byte at a time: every proper prefix must ask for more bytes (0), the
 * whole must decode to the right event with the published stamp intact.
 * Malformed input must be refused. For MQTT the server forwards exactly the
 * PUBLISH packet the publisher sent, so the encoder's output is the input.
 */
#include "drv.h"

#include "base/err.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

static uint8_t payload[DRV_PAYLOAD];
static const struct drv_stamp stamp = {.seq = 77, .sender = 12, .sent_ns = 123456789012345ull};

/* Feeds in[0..len) whole and byte by byte; returns the event of the whole. */
static struct drv_ev feed(const struct drv *d, const uint8_t *in, size_t len)
{
    struct drv_ev ev;
    for (size_t k = 0; k < len; k++) {
        memset(&ev, 0, sizeof(ev));
        CHECK(d->parse(in, k, &ev) == 0);
    }
    memset(&ev, 0, sizeof(ev));
    CHECK(d->parse(in, len, &ev) == (long)len);
    return ev;
}

static void check_msg(const struct drv_ev *ev)
{
    struct drv_stamp got;
    CHECK(ev->kind == DRV_EV_MSG);
    CHECK(drv_stamp_read(ev->payload, ev->payload_len, &got) == 0);
    CHECK(got.seq == stamp.seq && got.sender == stamp.sender && got.sent_ns == stamp.sent_ns);
}

static void rp_frame(struct buf *b, void (*fill)(msgpack_packer *))
{
    msgpack_packer pk;
    buf_reset(b);
    buf_put_be32(b, 0);
    msgpack_packer_init(&pk, b, buf_msgpack_write);
    fill(&pk);
    uint32_t n = (uint32_t)(b->len - 4);
    b->data[0] = (uint8_t)(n >> 24), b->data[1] = (uint8_t)(n >> 16);
    b->data[2] = (uint8_t)(n >> 8), b->data[3] = (uint8_t)n;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void fill_msg(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    pk_str(pk, "op"), pk_str(pk, "msg");
    pk_str(pk, "conv"), pk_str(pk, "d:u1:u2");
    pk_str(pk, "body");
    msgpack_pack_bin(pk, DRV_PAYLOAD);
    msgpack_pack_bin_body(pk, payload, DRV_PAYLOAD);
    pk_str(pk, "seq"), msgpack_pack_uint64(pk, 9);
}

static void fill_hello_ok(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    pk_str(pk, "op"), pk_str(pk, "ok");
    pk_str(pk, "id"), msgpack_pack_uint32(pk, 1);
    pk_str(pk, "heartbeat_ms"), msgpack_pack_uint32(pk, 30000);
}

static void fill_send_ok(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    pk_str(pk, "op"), pk_str(pk, "ok");
    pk_str(pk, "id"), msgpack_pack_uint32(pk, 2);
    pk_str(pk, "seq"), msgpack_pack_uint64(pk, 5);
}

static void fill_error(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    pk_str(pk, "op"), pk_str(pk, "error");
    pk_str(pk, "code"), pk_str(pk, "forbidden");
}

static void test_ringpush(void)
{
    const struct drv *d = drv_find("ringpush");
    struct buf b;
    struct drv_ev ev;
    buf_init(&b);
    rp_frame(&b, fill_msg);
    ev = feed(d, b.data, b.len);
    check_msg(&ev);
    rp_frame(&b, fill_hello_ok);
    CHECK(feed(d, b.data, b.len).kind == DRV_EV_READY);
    rp_frame(&b, fill_send_ok);
    CHECK(feed(d, b.data, b.len).kind == DRV_EV_ACK);
    rp_frame(&b, fill_error);
    ev = feed(d, b.data, b.len);
    CHECK(ev.kind == DRV_EV_ERROR && strstr(ev.what, "forbidden"));
    /* The encoders produce frames that decode as maps with the right op. */
    buf_reset(&b);
    CHECK(d->publish(&b, true, "g1", payload, 3) == 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, (const char *)b.data + 4, b.len - 4, NULL) ==
          MSGPACK_UNPACK_SUCCESS);
    CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 6);
    msgpack_unpacked_destroy(&u);
    uint8_t zero[4] = {0};
    CHECK(d->parse(zero, 4, &ev) == -RP_EFRAME);
    buf_deinit(&b);
}

static void test_redis(void)
{
    const struct drv *d = drv_find("redis");
    struct buf b;
    struct drv_ev ev;
    buf_init(&b);
    const char *head = "*3\r\n$7\r\nmessage\r\n$2\r\nu1\r\n$128\r\n";
    buf_append(&b, head, strlen(head));
    buf_append(&b, payload, DRV_PAYLOAD);
    buf_append(&b, "\r\n", 2);
    ev = feed(d, b.data, b.len);
    check_msg(&ev);
    const char *sub = "*3\r\n$9\r\nsubscribe\r\n$2\r\nu1\r\n:1\r\n";
    CHECK(feed(d, (const uint8_t *)sub, strlen(sub)).kind == DRV_EV_READY);
    ev = feed(d, (const uint8_t *)":1000\r\n", 7);
    CHECK(ev.kind == DRV_EV_ACK && ev.n == 1000);
    CHECK(feed(d, (const uint8_t *)"+PONG\r\n", 7).kind == DRV_EV_PONG);
    CHECK(feed(d, (const uint8_t *)"-ERR no\r\n", 9).kind == DRV_EV_ERROR);
    CHECK(d->parse((const uint8_t *)"?x\r\n", 4, &ev) == -RP_EFRAME);
    buf_deinit(&b);
}

static void test_nats(void)
{
    const struct drv *d = drv_find("nats");
    struct buf b;
    struct drv_ev ev;
    buf_init(&b);
    buf_append(&b, "MSG g1 1 128\r\n", 14);
    buf_append(&b, payload, DRV_PAYLOAD);
    buf_append(&b, "\r\n", 2);
    ev = feed(d, b.data, b.len);
    check_msg(&ev);
    buf_reset(&b);
    buf_append(&b, "MSG g1 1 _INBOX.x 128\r\n", 23);
    buf_append(&b, payload, DRV_PAYLOAD);
    buf_append(&b, "\r\n", 2);
    ev = feed(d, b.data, b.len);
    check_msg(&ev);
    CHECK(feed(d, (const uint8_t *)"PONG\r\n", 6).kind == DRV_EV_PONG);
    CHECK(feed(d, (const uint8_t *)"PING\r\n", 6).kind == DRV_EV_PINGED);
    CHECK(feed(d, (const uint8_t *)"-ERR 'x'\r\n", 10).kind == DRV_EV_ERROR);
    buf_deinit(&b);
}

static void test_mqtt(void)
{
    const struct drv *d = drv_find("mqtt");
    struct buf b;
    struct drv_ev ev;
    buf_init(&b);
    CHECK(d->publish(&b, false, "u42", payload, 1) == 0);
    ev = feed(d, b.data, b.len);
    check_msg(&ev);
    CHECK(feed(d, (const uint8_t *)"\x20\x02\x00\x00", 4).kind == DRV_EV_READY);
    CHECK(feed(d, (const uint8_t *)"\x20\x02\x00\x05", 4).kind == DRV_EV_ERROR);
    CHECK(feed(d, (const uint8_t *)"\x90\x03\x00\x01\x00", 5).kind == DRV_EV_READY);
    CHECK(feed(d, (const uint8_t *)"\x90\x03\x00\x01\x80", 5).kind == DRV_EV_ERROR);
    CHECK(feed(d, (const uint8_t *)"\xd0\x00", 2).kind == DRV_EV_PONG);
    /* A remaining length of more than four bytes is malformed. */
    CHECK(d->parse((const uint8_t *)"\x30\xff\xff\xff\xff\x01", 6, &ev) == -RP_EFRAME);
    buf_deinit(&b);
}

int main(void)
{
    drv_stamp_write(payload, &stamp);
    test_ringpush();
    test_redis();
    test_nats();
    test_mqtt();
    CHECK(drv_find("none") == NULL);
    printf("test_drv: ok\n");
    return 0;
}
