/*
 * The Prometheus text parser and its queries (clients/c/metrics.h): samples
 * with and without labels, escapes, special values and timestamps; malformed
 * lines refused with their line number; every prefix of a valid text parsed
 * without harm; sums by label; histogram quantiles against values worked out
 * by hand, and the refusals (no histogram, no observations, bad buckets).
 */
#include "metrics.h"

#include "base/err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static const char sample_text[] =
    "# HELP ringpush_shards Shard threads.\n"
    "# TYPE ringpush_shards gauge\n"
    "ringpush_shards 2\n"
    "\n"
    "# TYPE ringpush_connections gauge\n"
    "ringpush_connections{shard=\"0\"} 3\n"
    "ringpush_connections{shard=\"1\"} 4\r\n"
    "ringpush_hellos_total{shard=\"0\",outcome=\"ok\"} 10\n"
    "ringpush_hellos_total{shard=\"1\",outcome=\"ok\"} 5 1700000000000\n"
    "ringpush_hellos_total{shard=\"0\",outcome=\"unauthorized\"} 1\n"
    "ringpush_hellos_total{ shard = \"1\" , outcome=\"unauthorized\", } 2\n"
    "odd_label{v=\"a\\\"b\\\\c\\nd\"} -1.5e3\n"
    "special{k=\"x\"} +Inf\n"
    "lat_bucket{le=\"0.001\"} 10\n"
    "lat_bucket{le=\"0.002\"} 30\n"
    "lat_bucket{le=\"0.004\"} 90\n"
    "lat_bucket{le=\"0.008\"} 99\n"
    "lat_bucket{le=\"+Inf\"} 100\n"
    "lat_sum 0.25\n"
    "lat_count 100\n";

static void test_parse(void)
{
    struct rp_metrics m;
    int n = rp_metrics_parse(&m, sample_text, strlen(sample_text), NULL);
    CHECK(n == 16);
    CHECK(strcmp(m.samples[0].name, "ringpush_shards") == 0 && m.samples[0].nlabels == 0);
    CHECK(m.samples[0].value == 2);
    CHECK(strcmp(rp_sample_label(&m.samples[2], "shard"), "1") == 0 && m.samples[2].value == 4);
    CHECK(rp_sample_label(&m.samples[2], "outcome") == NULL);
    const struct rp_sample *sp = &m.samples[6];
    CHECK(sp->nlabels == 2 && strcmp(rp_sample_label(sp, "outcome"), "unauthorized") == 0);
    CHECK(strcmp(rp_sample_label(sp, "shard"), "1") == 0);
    const struct rp_sample *odd = &m.samples[7];
    CHECK(strcmp(odd->name, "odd_label") == 0 && odd->value == -1500);
    CHECK(strcmp(rp_sample_label(odd, "v"), "a\"b\\c\nd") == 0);
    CHECK(isinf(m.samples[8].value) && m.samples[8].value > 0);

    double sum;
    CHECK(rp_metrics_sum(&m, "ringpush_connections", NULL, 0, &sum) == 2 && sum == 7);
    const char *ok[] = {"outcome", "ok"};
    CHECK(rp_metrics_sum(&m, "ringpush_hellos_total", ok, 1, &sum) == 2 && sum == 15);
    const char *s1u[] = {"shard", "1", "outcome", "unauthorized"};
    CHECK(rp_metrics_sum(&m, "ringpush_hellos_total", s1u, 2, &sum) == 1 && sum == 2);
    const char *none[] = {"outcome", "bad_request"};
    CHECK(rp_metrics_sum(&m, "ringpush_hellos_total", none, 1, &sum) == 0 && sum == 0);
    CHECK(rp_metrics_sum(&m, "nothing", NULL, 0, &sum) == 0);
    rp_metrics_free(&m);
    rp_metrics_free(&m); /* idempotent */
    CHECK(rp_metrics_parse(&m, "", 0, NULL) == 0);
    rp_metrics_free(&m);
}

static void expect_bad(const char *text, size_t want_line)
{
    struct rp_metrics m;
    size_t line = 0;
    int r = rp_metrics_parse(&m, text, strlen(text), &line);
    if (r != -RP_EFRAME || line != want_line) {
        fprintf(stderr, "accepted or misplaced (r=%d line=%zu): %s\n", r, line, text);
        exit(1);
    }
    CHECK(m.samples == NULL && m.n == 0); /* nothing held after an error */
}

static void test_malformed(void)
{
    expect_bad("a 1\nb\n", 2);                /* no value */
    expect_bad("a 1\nb{x=\"1\"\n", 2);        /* unclosed braces */
    expect_bad("a{x=1} 2\n", 1);              /* unquoted label value */
    expect_bad("a{x=\"1} 2\n", 1);            /* unterminated quote */
    expect_bad("a{x=\"\\q\"} 2\n", 1);        /* unknown escape */
    expect_bad("a{=\"1\"} 2\n", 1);           /* label without a name */
    expect_bad("a 1x\n", 1);                  /* trailing garbage in the value */
    expect_bad("a 1 2 3\n", 1);               /* more than a timestamp */
    expect_bad("# ok\n\n9a 1\n", 3);          /* a name cannot start with a digit */
    expect_bad("a{x=\"1\"}{y=\"2\"} 1\n", 1); /* two label sets */
    expect_bad("a-b 1\n", 1);
}

/* Every prefix of a valid text: parsed or refused, never read past its end. */
static void test_prefixes(void)
{
    size_t len = strlen(sample_text);
    for (size_t i = 0; i <= len; i++) {
        char *copy = malloc(i ? i : 1); /* exact size: ASan sees any overread */
        CHECK(copy);
        memcpy(copy, sample_text, i);
        struct rp_metrics m;
        int r = rp_metrics_parse(&m, copy, i, NULL);
        CHECK(r >= 0 || r == -RP_EFRAME);
        if (r >= 0)
            rp_metrics_free(&m);
        free(copy);
    }
}

static void test_quantiles(void)
{
    struct rp_metrics m;
    CHECK(rp_metrics_parse(&m, sample_text, strlen(sample_text), NULL) > 0);
    double v, count = 0;
    /* rank 50 of 100 lies in (0.002, 0.004] holding ranks 31..90: 0.002 + 0.002 * 20/60. */
    CHECK(rp_metrics_quantile(&m, "lat", 0.5, &v, &count) == 0);
    CHECK(NEAR(v, 0.002 + 0.002 * 20.0 / 60.0) && count == 100);
    /* rank 5 in the first bucket: interpolated from 0. */
    CHECK(rp_metrics_quantile(&m, "lat", 0.05, &v, NULL) == 0 && NEAR(v, 0.0005));
    /* rank 99 is the top of (0.004, 0.008]. */
    CHECK(rp_metrics_quantile(&m, "lat", 0.99, &v, NULL) == 0 && NEAR(v, 0.008));
    /* rank 99.5 falls in +Inf: the largest finite bound. */
    CHECK(rp_metrics_quantile(&m, "lat", 0.995, &v, NULL) == 0 && NEAR(v, 0.008));
    CHECK(rp_metrics_quantile(&m, "lat", 0, &v, NULL) == -EINVAL);
    CHECK(rp_metrics_quantile(&m, "lat", 1, &v, NULL) == -EINVAL);
    CHECK(rp_metrics_quantile(&m, "nope", 0.5, &v, NULL) == -ENOENT);
    rp_metrics_free(&m);

    /* Two shards' buckets are added bound by bound; out-of-order lines are sorted. */
    static const char two[] = "h_bucket{shard=\"0\",le=\"+Inf\"} 2\n"
                              "h_bucket{shard=\"0\",le=\"1\"} 1\n"
                              "h_bucket{shard=\"0\",le=\"2\"} 2\n"
                              "h_bucket{shard=\"1\",le=\"1\"} 0\n"
                              "h_bucket{shard=\"1\",le=\"2\"} 2\n"
                              "h_bucket{shard=\"1\",le=\"+Inf\"} 2\n";
    CHECK(rp_metrics_parse(&m, two, strlen(two), NULL) == 6);
    /* 4 observations: 1 at <= 1, 3 in (1, 2]; rank 2 -> 1 + 1 * (2 - 1) / 3. */
    CHECK(rp_metrics_quantile(&m, "h", 0.5, &v, &count) == 0 && count == 4);
    CHECK(NEAR(v, 1 + 1.0 / 3.0));
    rp_metrics_free(&m);

    static const char empty[] = "e_bucket{le=\"1\"} 0\ne_bucket{le=\"+Inf\"} 0\n";
    CHECK(rp_metrics_parse(&m, empty, strlen(empty), NULL) == 2);
    CHECK(rp_metrics_quantile(&m, "e", 0.5, &v, &count) == -ENODATA && count == 0);
    rp_metrics_free(&m);

    static const char noinf[] = "e_bucket{le=\"1\"} 3\ne_bucket{le=\"2\"} 4\n";
    CHECK(rp_metrics_parse(&m, noinf, strlen(noinf), NULL) == 2);
    CHECK(rp_metrics_quantile(&m, "e", 0.5, &v, NULL) == -EINVAL);
    rp_metrics_free(&m);

    static const char shrinking[] = "e_bucket{le=\"1\"} 3\ne_bucket{le=\"+Inf\"} 2\n";
    CHECK(rp_metrics_parse(&m, shrinking, strlen(shrinking), NULL) == 2);
    CHECK(rp_metrics_quantile(&m, "e", 0.5, &v, NULL) == -EINVAL);
    rp_metrics_free(&m);
}

int main(void)
{
    test_parse();
    test_malformed();
    test_prefixes();
    test_quantiles();
    printf("test_metrics: ok\n");
    return 0;
}
