/*
 * The Prometheus text writer: family headers, samples with and without
 * labels, HELP escaping, and histograms (cumulative buckets, +Inf, _sum,
 * _count), compared with the exact expected exposition.
 */
#include "engine/admin/prom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

static void expect(struct buf *b, const char *want)
{
    CHECK(!buf_failed(b));
    if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0) {
        fprintf(stderr, "got:\n%.*s\nwant:\n%s\n", (int)b->len, (const char *)b->data, want);
        exit(1);
    }
    buf_reset(b);
}

int main(void)
{
    struct buf b;
    buf_init(&b);

    CHECK(prom_family(&b, "rp_x_total", "counter", "Things\\done\nsecond line.") == 0);
    CHECK(prom_sample(&b, "rp_x_total", "shard=\"0\",dir=\"in\"", 18446744073709551615ull) == 0);
    CHECK(prom_sample(&b, "rp_x_total", NULL, 0) == 0);
    CHECK(prom_sample(&b, "rp_x_total", "", 7) == 0);
    expect(&b, "# HELP rp_x_total Things\\\\done\\nsecond line.\n"
               "# TYPE rp_x_total counter\n"
               "rp_x_total{shard=\"0\",dir=\"in\"} 18446744073709551615\n"
               "rp_x_total 0\n"
               "rp_x_total 7\n");

    CHECK(prom_sample_f(&b, "rp_g", NULL, 0.25) == 0);
    expect(&b, "rp_g 0.25\n");

    double bounds[] = {0.001, 0.5, 4};
    uint64_t counts[] = {2, 0, 3, 1}; /* the last: above every bound */
    CHECK(prom_histogram(&b, "rp_h_seconds", NULL, bounds, counts, 3, 7.5) == 0);
    expect(&b, "rp_h_seconds_bucket{le=\"0.001\"} 2\n"
               "rp_h_seconds_bucket{le=\"0.5\"} 2\n"
               "rp_h_seconds_bucket{le=\"4\"} 5\n"
               "rp_h_seconds_bucket{le=\"+Inf\"} 6\n"
               "rp_h_seconds_sum 7.5\n"
               "rp_h_seconds_count 6\n");
    CHECK(prom_histogram(&b, "rp_h", "shard=\"1\"", bounds, counts, 1, 0) == 0);
    expect(&b, "rp_h_bucket{shard=\"1\",le=\"0.001\"} 2\n"
               "rp_h_bucket{shard=\"1\",le=\"+Inf\"} 2\n"
               "rp_h_sum{shard=\"1\"} 0\n"
               "rp_h_count{shard=\"1\"} 2\n");

    /* A line too long to be a metric is refused and marks the buffer. */
    char name[600];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    CHECK(prom_sample(&b, name, NULL, 1) != 0);
    CHECK(buf_failed(&b));
    buf_deinit(&b);
    printf("test_admin_prom: ok\n");
    return 0;
}
