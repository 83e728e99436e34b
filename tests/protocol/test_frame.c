/*
 * Frame reassembly: a stream of frames of assorted sizes is fed whole, byte by
 * byte, split in two at every position, in random chunks and truncated at
 * every byte; the pending bytes are exported at every position and re-fed to a
 * fresh decoder; bad lengths fail and stay failed.
 */
#include "check.h"

#include "base/err.h"
#include "protocol/frame.h"

#include <string.h>

#define MAXF   70000u
#define NFRAME 7

static const uint32_t sizes[NFRAME] = {1, 5, 3, 300, 1, 69999, 17};
static uint8_t stream[4 * NFRAME + 1 + 5 + 3 + 300 + 1 + 69999 + 17];
static size_t stream_len;
static size_t ends[NFRAME]; /* offset just past each frame */

static void build_stream(void)
{
    size_t o = 0;
    for (int i = 0; i < NFRAME; i++) {
        uint32_t l = sizes[i];
        stream[o++] = (uint8_t)(l >> 24);
        stream[o++] = (uint8_t)(l >> 16);
        stream[o++] = (uint8_t)(l >> 8);
        stream[o++] = (uint8_t)l;
        for (uint32_t j = 0; j < l; j++)
            stream[o++] = (uint8_t)(test_rand() >> 32);
        ends[i] = o;
    }
    stream_len = o;
    CHECK(o == sizeof(stream));
}

static bool frame_matches(int i, const uint8_t *f, uint32_t fl)
{
    return fl == sizes[i] && memcmp(f, stream + ends[i] - sizes[i], fl) == 0;
}

/*
 * Feeds stream[from..to) to d in chunks of the sizes chunk() picks, checking
 * every frame that comes out against the expected next one. Returns how many
 * frames came out; *next is the index of the first expected frame.
 */
static int feed(struct frame_dec *d, const uint8_t *data, size_t len, int next,
                size_t (*chunk)(size_t left))
{
    size_t off = 0;
    while (off < len) {
        size_t n = chunk(len - off);
        const uint8_t *chunk_p = data + off;
        size_t used = 0;
        while (used < n) {
            const uint8_t *f;
            uint32_t fl;
            int r = frame_next(d, chunk_p + used, n - used, &f, &fl);
            CHECK(r > 0);
            used += (size_t)r;
            if (f) {
                CHECK(next < NFRAME);
                CHECK(frame_matches(next, f, fl));
                next++;
            }
        }
        off += n;
    }
    return next;
}

static size_t chunk_all(size_t left)
{
    return left;
}

static size_t chunk_one(size_t left)
{
    (void)left;
    return 1;
}

static size_t chunk_rand(size_t left)
{
    size_t n = 1 + test_rand() % 9000;
    return n < left ? n : left;
}

static void test_whole_and_bytewise(void)
{
    struct frame_dec d;
    frame_dec_init(&d, MAXF);
    CHECK(feed(&d, stream, stream_len, 0, chunk_all) == NFRAME);
    CHECK(feed(&d, stream, stream_len, 0, chunk_one) == NFRAME);
    for (int i = 0; i < 20; i++)
        CHECK(feed(&d, stream, stream_len, 0, chunk_rand) == NFRAME);
    const uint8_t *p;
    CHECK(frame_dec_pending(&d, &p) == 0 && p == NULL);
    frame_dec_deinit(&d);
}

static void test_zero_copy(void)
{
    struct frame_dec d;
    const uint8_t *f;
    uint32_t fl;
    frame_dec_init(&d, MAXF);
    /* whole frames in one chunk come back in place */
    CHECK(frame_next(&d, stream, stream_len, &f, &fl) == (int)ends[0]);
    CHECK(f == stream + 4 && fl == 1);
    CHECK(frame_next(&d, stream + ends[0], stream_len - ends[0], &f, &fl) ==
          (int)(ends[1] - ends[0]));
    CHECK(f == stream + ends[0] + 4 && fl == 5);
    CHECK(frame_next(&d, stream, 0, &f, &fl) == 0 && f == NULL && fl == 0);
    /* a chunk holding exactly one frame is zero copy too */
    CHECK(frame_next(&d, stream + ends[2], ends[3] - ends[2], &f, &fl) == (int)(ends[3] - ends[2]));
    CHECK(f == stream + ends[2] + 4 && fl == 300);
    frame_dec_deinit(&d);
}

/* Split in two at every position; the first part may end mid-header or mid-payload. */
static void test_split_everywhere(void)
{
    /* the big frame makes every split O(n): use the prefix holding the first 5 frames
     * and a sampled set of splits inside the big one */
    for (size_t cut = 0; cut <= stream_len; cut += (cut > ends[4] && cut < ends[5] - 8) ? 97 : 1) {
        struct frame_dec d;
        frame_dec_init(&d, MAXF);
        int got = feed(&d, stream, cut, 0, chunk_all);
        got = feed(&d, stream + cut, stream_len - cut, got, chunk_all);
        CHECK(got == NFRAME);
        frame_dec_deinit(&d);
    }
}

/* Truncated at each byte: exactly the frames that end before the cut come out,
 * the rest is pending, and exporting it to a fresh decoder loses nothing. */
static void test_truncate_and_handover(void)
{
    for (size_t cut = 0; cut <= stream_len; cut += (cut > ends[4] && cut < ends[5] - 8) ? 89 : 1) {
        struct frame_dec d, e;
        frame_dec_init(&d, MAXF);
        int got = feed(&d, stream, cut, 0, chunk_rand);
        int complete = 0;
        while (complete < NFRAME && ends[complete] <= cut)
            complete++;
        CHECK(got == complete);
        size_t boundary = complete ? ends[complete - 1] : 0;
        const uint8_t *p;
        size_t n = frame_dec_pending(&d, &p);
        CHECK(n == cut - boundary);
        CHECK(n == 0 || memcmp(p, stream + boundary, n) == 0);

        frame_dec_init(&e, MAXF);
        got = feed(&e, p, n, got, chunk_one);
        CHECK(got == complete);
        got = feed(&e, stream + cut, stream_len - cut, got, chunk_all);
        CHECK(got == NFRAME);
        frame_dec_deinit(&e);
        frame_dec_deinit(&d);
    }
}

static void expect_fail(const uint8_t *hdr, uint32_t max, int want, size_t (*chunk)(size_t))
{
    struct frame_dec d;
    const uint8_t *f;
    uint32_t fl;
    frame_dec_init(&d, max);
    size_t off = 0;
    int r = 0;
    while (off < 4) {
        size_t n = chunk(4 - off);
        r = frame_next(&d, hdr + off, n, &f, &fl);
        CHECK(f == NULL);
        if (r < 0)
            break;
        CHECK((size_t)r == n);
        off += n;
    }
    CHECK(r == want);
    /* sticky: more bytes change nothing, and nothing is held */
    CHECK(frame_next(&d, (const uint8_t *)"\0\0\0\1x", 5, &f, &fl) == want && f == NULL);
    const uint8_t *p;
    CHECK(frame_dec_pending(&d, &p) == 0);
    frame_dec_deinit(&d);
}

static void test_bad_lengths(void)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    static const uint8_t over[4] = {0, 0, 0x01, 0x01};       /* 257 > 256 */
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff}; /* 4 GiB - 1 */
    static const uint8_t exact[4] = {0, 0, 0x01, 0x00};      /* 256 */
    expect_fail(zero, 256, -RP_EFRAME, chunk_all);
    expect_fail(zero, 256, -RP_EFRAME, chunk_one);
    expect_fail(over, 256, -RP_ETOOLARGE, chunk_all);
    expect_fail(over, 256, -RP_ETOOLARGE, chunk_one);
    expect_fail(huge, 65536, -RP_ETOOLARGE, chunk_one);

    /* L == max_frame is fine */
    struct frame_dec d;
    const uint8_t *f;
    uint32_t fl;
    uint8_t buf[4 + 256] = {0};
    memcpy(buf, exact, 4);
    frame_dec_init(&d, 256);
    CHECK(frame_next(&d, buf, 3, &f, &fl) == 3 && !f);
    CHECK(frame_next(&d, buf + 3, sizeof(buf) - 3, &f, &fl) == (int)sizeof(buf) - 3);
    CHECK(f && fl == 256);

    /* an error after a good frame in the same chunk: the frame first, then the error */
    uint8_t two[4 + 1 + 4] = {0, 0, 0, 1, 0x80, 0, 0, 0, 0};
    CHECK(frame_next(&d, two, sizeof(two), &f, &fl) == 5 && f == two + 4 && fl == 1);
    CHECK(frame_next(&d, two + 5, 4, &f, &fl) == -RP_EFRAME && !f);
    frame_dec_deinit(&d);
}

int main(void)
{
    build_stream();
    test_whole_and_bytewise();
    test_zero_copy();
    test_split_everywhere();
    test_truncate_and_handover();
    test_bad_lengths();
    printf("test_frame: ok\n");
    return 0;
}
