/*
 * The Prometheus text format (0.0.4) as served by the admin port's /metrics:
 * parsed into a flat list of samples, then queried by name and labels, and
 * histogram quantiles estimated from the cumulative buckets.
 *
 * Only what a sample line holds is kept: `name{labels} value [timestamp]`.
 * Comment lines (# HELP, # TYPE) and blank lines are skipped; the timestamp
 * is ignored. Label values are unescaped (\\, \", \n).
 *
 * Thread: a struct rp_metrics belongs to one thread at a time.
 */
#ifndef RP_CLIENTS_METRICS_H
#define RP_CLIENTS_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct rp_label {
    const char *name;  /* NUL-terminated, owned by the rp_metrics */
    const char *value; /* unescaped, NUL-terminated, owned by the rp_metrics */
};

struct rp_sample {
    const char *name; /* NUL-terminated, owned by the rp_metrics */
    struct rp_label *labels;
    size_t nlabels;
    double value; /* +Inf, -Inf and NaN as the C values */
};

struct rp_metrics {
    struct rp_sample *samples;
    size_t n, cap;
    char *text; /* the parsed copy that names and labels point into */
    struct rp_label *label_pool;
    size_t nlabel_pool;
};

/*
 * Parses len bytes of exposition text into m (which must be zeroed or freed
 * before). Copies what it keeps: text may be freed afterwards. Returns the
 * number of samples, or -RP_EFRAME with *bad_line (when not NULL) set to the
 * 1-based number of the first line that is not a valid sample or comment,
 * or -ENOMEM. m holds nothing after an error.
 */
int rp_metrics_parse(struct rp_metrics *m, const char *text, size_t len, size_t *bad_line);

/* Releases everything m holds and zeroes it. Safe on a zeroed struct. */
void rp_metrics_free(struct rp_metrics *m);

/* The value of label name in s (a view valid while m lives), or NULL. */
const char *rp_sample_label(const struct rp_sample *s, const char *name);

/*
 * True when s is named name and carries label k = v for each of the
 * nmatch pairs in match[] (k0, v0, k1, v1, ...). Other labels are ignored.
 */
bool rp_sample_match(const struct rp_sample *s, const char *name, const char *const *match,
                     size_t nmatch);

/*
 * The sum of every sample that rp_sample_match accepts, in *sum. Returns how
 * many samples were added (0: none, *sum is then 0).
 */
size_t rp_metrics_sum(const struct rp_metrics *m, const char *name, const char *const *match,
                      size_t nmatch, double *sum);

/*
 * Estimates quantile q (0 < q < 1) of histogram family hist (the base name,
 * without _bucket) from its cumulative buckets, summed over every other
 * label (shards), the way Prometheus' histogram_quantile does: the bucket
 * where the rank q * count falls, with linear interpolation inside it (from
 * 0 for the first bucket). A rank in the +Inf bucket gives the largest finite
 * bound. *count receives the total count when count is not NULL.
 *
 * Returns 0 and *out, -ENOENT (no such histogram), -ENODATA (no
 * observations), -EINVAL (q outside (0, 1), or buckets that are not
 * cumulative or lack +Inf), -ENOMEM.
 */
int rp_metrics_quantile(const struct rp_metrics *m, const char *hist, double q, double *out,
                        double *count);

#endif
