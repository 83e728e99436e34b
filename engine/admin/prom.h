/*
 * A writer of the Prometheus text exposition format (version 0.0.4): metric
 * families with their HELP and TYPE lines, samples with labels, and
 * histograms with cumulative buckets, _sum and _count. No I/O: everything is
 * appended to a struct buf.
 *
 * Labels are passed preformatted without braces (`shard="0",dir="in"`, or
 * NULL for none); the callers only ever use fixed names and numbers, so no
 * escaping is done for them. HELP text is escaped.
 *
 * Errors: every function returns 0 or -ENOMEM (the buffer is then marked
 * failed, so a sequence of calls may be checked once with buf_failed()).
 * Thread: pure; any thread.
 */
#ifndef RP_ENGINE_ADMIN_PROM_H
#define RP_ENGINE_ADMIN_PROM_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
int prom_family(struct buf *out, const char *name, const char *type, const char *help);

/* "name{labels} value" with an unsigned integer value. */
int prom_sample(struct buf *out, const char *name, const char *labels, uint64_t value);

/* The same with a floating-point value (printed exactly enough to round-trip). */
int prom_sample_f(struct buf *out, const char *name, const char *labels, double value);

/*
 * The samples of one histogram: name_bucket{labels,le="bound"} for each of
 * the nbounds upper bounds (ascending), then le="+Inf", name_sum and
 * name_count. counts holds nbounds + 1 per-bucket (non-cumulative) counts,
 * the last one for values above every bound; they are accumulated here.
 */
int prom_histogram(struct buf *out, const char *name, const char *labels, const double *bounds,
                   const uint64_t *counts, size_t nbounds, double sum);

#endif
