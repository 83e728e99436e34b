/*
 * msgpack pre-scan: the amplification input `dd 97 00 00 00` and its cousins
 * for every 32- and 16-bit length or count, run through mpscan_map and
 * req_decode; valid maps of every value type; non-maps; trailing bytes;
 * nesting of any depth; truncation at every byte. Finally random mutations of
 * valid maps: whenever the scan accepts an input, msgpack-c must decode
 * exactly one map using exactly all the bytes (the mutations stay far below
 * msgpack-c's own nesting limit of 32).
 */
#include "check.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/mpscan.h"
#include "protocol/req.h"

#include <msgpack.h>
#include <string.h>

#define SCAN(...)                                                                                  \
    ({                                                                                             \
        static const uint8_t in_[] = {__VA_ARGS__};                                                \
        mpscan_map(in_, sizeof(in_));                                                              \
    })

static int req_on(const uint8_t *p, size_t n)
{
    struct req_decoder d;
    struct req r;
    struct req_limits lim = {.max_body = 32768, .max_users = 500};
    const char *msg;
    CHECK(req_decoder_init(&d) == 0);
    int err = req_decode(&d, &lim, p, (uint32_t)n, &r, &msg);
    req_decoder_deinit(&d);
    return err;
}

static void test_amplification(void)
{
    static const uint8_t bomb[] = {0xdd, 0x97, 0x00, 0x00, 0x00};
    CHECK(mpscan_map(bomb, sizeof(bomb)) == -RP_EFRAME);
    CHECK(mpscan_value(bomb, sizeof(bomb)) == -RP_EFRAME);
    /* under ASan a 60 GB allocation attempt would abort this test */
    CHECK(req_on(bomb, sizeof(bomb)) == -RP_EFRAME);

    /* cousins, each as the whole input and as a value inside a map */
    static const uint8_t heads[][6] = {
        {5, 0xdf, 0x97, 0, 0, 0},          /* map32 */
        {5, 0xdb, 0x97, 0, 0, 0},          /* str32 */
        {5, 0xc6, 0x97, 0, 0, 0},          /* bin32 */
        {6, 0xc9, 0x97, 0, 0, 0},          /* ext32 (+ type byte) */
        {5, 0xdd, 0xff, 0xff, 0xff, 0xff}, /* array32, max */
        {5, 0xdf, 0xff, 0xff, 0xff, 0xff}, /* map32, max */
        {3, 0xdc, 0xff, 0xff},             /* array16 */
        {3, 0xde, 0xff, 0xff},             /* map16 */
        {3, 0xda, 0xff, 0xff},             /* str16 */
        {3, 0xc5, 0xff, 0xff},             /* bin16 */
        {2, 0xd9, 0xff},                   /* str8 */
        {2, 0xc4, 0xff},                   /* bin8 */
        {3, 0xc7, 0xff, 1},                /* ext8 */
        {1, 0xd8},                         /* fixext16 with no payload */
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        uint8_t in[16];
        size_t n = heads[i][0];
        memcpy(in, heads[i] + 1, n);
        CHECK(mpscan_map(in, n) == -RP_EFRAME);
        CHECK(mpscan_value(in, n) == -RP_EFRAME);
        CHECK(req_on(in, n) == -RP_EFRAME);
        /* {"a": <head>} */
        in[0] = 0x81;
        in[1] = 0xa1;
        in[2] = 'a';
        memcpy(in + 3, heads[i] + 1, n);
        CHECK(mpscan_map(in, n + 3) == -RP_EFRAME);
        CHECK(req_on(in, n + 3) == -RP_EFRAME);
    }
    /* counts summed over open containers: an array of 15 in a map with 14 bytes left */
    CHECK(SCAN(0x82, 0xa1, 'a', 0x9f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) == -RP_EFRAME);
    /* ... and the outer map's second pair counts too */
    CHECK(SCAN(0x82, 0xa1, 'a', 0x93, 0, 0, 0, 0xa1) == -RP_EFRAME);
    CHECK(SCAN(0x82, 0xa1, 'a', 0x93, 0, 0, 0, 0xa1, 'b', 0xc0) == 0);
}

static void pack_all_types(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 12);
    msgpack_pack_str_with_body(pk, "nil", 3);
    msgpack_pack_nil(pk);
    msgpack_pack_str_with_body(pk, "t", 1);
    msgpack_pack_true(pk);
    msgpack_pack_str_with_body(pk, "u64", 3);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_str_with_body(pk, "i64", 3);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_str_with_body(pk, "f", 1);
    msgpack_pack_double(pk, 1.5);
    msgpack_pack_str_with_body(pk, "f32", 3);
    msgpack_pack_float(pk, 2.5f);
    static char big[70000];
    msgpack_pack_str_with_body(pk, "s", 1);
    msgpack_pack_str_with_body(pk, big, sizeof(big)); /* str32 */
    msgpack_pack_str_with_body(pk, "b", 1);
    msgpack_pack_bin_with_body(pk, big, 300); /* bin16 */
    msgpack_pack_str_with_body(pk, "e", 1);
    msgpack_pack_ext_with_body(pk, big, 16, 5); /* fixext16 */
    msgpack_pack_str_with_body(pk, "e8", 2);
    msgpack_pack_ext_with_body(pk, big, 3, 7); /* ext8 */
    msgpack_pack_str_with_body(pk, "arr", 3);
    msgpack_pack_array(pk, 20); /* array16 */
    for (int i = 0; i < 20; i++)
        msgpack_pack_int(pk, -i);
    msgpack_pack_str_with_body(pk, "m", 1);
    msgpack_pack_map(pk, 1);
    msgpack_pack_str_with_body(pk, "", 0);
    msgpack_pack_map(pk, 0);
}

static void test_valid_and_not(void)
{
    struct buf b;
    msgpack_packer pk;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_msgpack_write);
    pack_all_types(&pk);
    CHECK(!buf_failed(&b));
    CHECK(mpscan_map(b.data, b.len) == 0);
    CHECK(mpscan_value(b.data, b.len) == 0);
    /* truncated at each byte */
    for (size_t n = 0; n < b.len; n += n < 200 || n > b.len - 200 ? 1 : 101)
        CHECK(mpscan_map(b.data, n) == -RP_EFRAME);
    /* trailing bytes */
    buf_put_u8(&b, 0xc0);
    CHECK(mpscan_map(b.data, b.len) == -RP_EFRAME);
    buf_deinit(&b);

    CHECK(SCAN(0x80) == 0);
    CHECK(SCAN(0x81, 0xa1, 'a', 0x01) == 0);
    CHECK(SCAN(0xde, 0, 1, 0xa1, 'a', 0x01) == 0);       /* map16 */
    CHECK(SCAN(0xdf, 0, 0, 0, 1, 0xa1, 'a', 0x01) == 0); /* map32 */
    CHECK(mpscan_map(NULL, 0) == -RP_EFRAME);
    CHECK(SCAN(0x90) == -RP_EFRAME);                              /* array */
    CHECK(SCAN(0xa1, 'a') == -RP_EFRAME);                         /* str */
    CHECK(SCAN(0x01) == -RP_EFRAME);                              /* int */
    CHECK(SCAN(0xc0) == -RP_EFRAME);                              /* nil */
    CHECK(SCAN(0x80, 0x80) == -RP_EFRAME);                        /* two maps */
    CHECK(SCAN(0x81, 0xa1, 'a', 0xc1) == -RP_EFRAME);             /* never used */
    CHECK(SCAN(0x81, 0xa1, 'a') == -RP_EFRAME);                   /* value missing */
    CHECK(SCAN(0x81, 0xa1, 'a', 0xcf, 0, 0, 0, 0) == -RP_EFRAME); /* short uint64 */
    CHECK(mpscan_value((const uint8_t *)"\x01", 1) == 0);
    CHECK(mpscan_value((const uint8_t *)"\x92\x01\xa0", 3) == 0);
}

static void test_nesting(void)
{
    static uint8_t in[3 * 4096 + 8];
    /* depth d: d-1 maps {"":...} around an innermost empty map; no depth
     * is too deep for the scan, which keeps no per-level state */
    for (unsigned depth = 1; depth <= 4096; depth = depth < 40 ? depth + 1 : depth * 2) {
        size_t n = 0;
        for (unsigned i = 1; i < depth; i++) {
            in[n++] = 0x81;
            in[n++] = 0xa0;
        }
        in[n++] = 0x80;
        CHECK(mpscan_map(in, n) == 0);
        /* cut anywhere, or followed by a byte: not one map */
        CHECK(mpscan_map(in, n - 1) == -RP_EFRAME);
        in[n] = 0xc0;
        CHECK(mpscan_map(in, n + 1) == -RP_EFRAME);
    }
    /* arrays nest the same way, under a key of the map */
    size_t n = 0;
    in[n++] = 0x81;
    in[n++] = 0xa0;
    for (unsigned i = 0; i < 3 * 4096; i++)
        in[n++] = 0x91;
    in[n++] = 0x01;
    CHECK(mpscan_map(in, n) == 0);
    in[n - 1] = 0x92; /* the innermost array now wants two elements and gets none */
    CHECK(mpscan_map(in, n) == -RP_EFRAME);
}

/* Whatever the scan accepts, msgpack-c decodes to exactly one map of that size. */
static void test_agrees_with_msgpack_c(void)
{
    struct buf b;
    msgpack_packer pk;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_msgpack_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "send", 4);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, 70000);
    msgpack_pack_bin_with_body(&pk, "xyz", 3);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_int8(&pk, -3);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_ext_with_body(&pk, "12345678", 8, 1);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_double(&pk, 0.25);
    CHECK(!buf_failed(&b));

    uint8_t in[256];
    unsigned accepted = 0;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = b.len;
        memcpy(in, b.data, n);
        int muts = 1 + (int)(test_rand() % 3);
        for (int m = 0; m < muts; m++) {
            uint64_t r = test_rand();
            switch (r % 4) {
            case 0:
                in[(r >> 8) % n] = (uint8_t)(r >> 32);
                break;
            case 1:
                in[(r >> 8) % n] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 2:
                if (n > 1)
                    n--;
                break;
            default:
                if (n < sizeof(in))
                    in[n++] = (uint8_t)(r >> 24);
            }
        }
        if (mpscan_map(in, n) != 0)
            continue;
        accepted++;
        msgpack_object obj;
        size_t off = 0;
        msgpack_zone_clear(&zone);
        CHECK(msgpack_unpack((const char *)in, n, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS);
        CHECK(off == n);
        CHECK(obj.type == MSGPACK_OBJECT_MAP);
    }
    CHECK(accepted > 1000); /* the check above really ran */
    msgpack_zone_destroy(&zone);
    buf_deinit(&b);
}

int main(void)
{
    test_amplification();
    test_valid_and_not();
    test_nesting();
    test_agrees_with_msgpack_c();
    printf("test_mpscan: ok\n");
    return 0;
}
