/*
 * Prometheus text format writer (see prom.h). The format is line based:
 * comments first, then one sample per line; a family's samples must follow
 * its TYPE line without another family in between, which the callers keep by
 * writing one family at a time.
 */
#include "engine/admin/prom.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int appendf(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int appendf(struct buf *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start is just above
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        out->oom = true; /* a line this long is a caller bug; fail loudly */
        return -ENOMEM;
    }
    return buf_append(out, line, (size_t)n);
}

int prom_family(struct buf *out, const char *name, const char *type, const char *help)
{
    if (appendf(out, "# HELP %s ", name))
        return -ENOMEM;
    /* HELP escapes backslash and line feed. */
    for (const char *p = help; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : NULL;
        if (esc ? buf_append(out, esc, 2) : buf_append(out, p, 1))
            return -ENOMEM;
    }
    return appendf(out, "\n# TYPE %s %s\n", name, type);
}

int prom_sample(struct buf *out, const char *name, const char *labels, uint64_t value)
{
    if (labels && *labels)
        return appendf(out, "%s{%s} %" PRIu64 "\n", name, labels, value);
    return appendf(out, "%s %" PRIu64 "\n", name, value);
}

/* The shortest of %.15g and %.17g that reads back as v: 0.005, not
 * 0.0050000000000000001. */
static void fmt_double(char *s, size_t n, double v)
{
    snprintf(s, n, "%.15g", v);
    if (strtod(s, NULL) != v)
        snprintf(s, n, "%.17g", v);
}

int prom_sample_f(struct buf *out, const char *name, const char *labels, double value)
{
    char v[32];
    fmt_double(v, sizeof(v), value);
    if (labels && *labels)
        return appendf(out, "%s{%s} %s\n", name, labels, v);
    return appendf(out, "%s %s\n", name, v);
}

int prom_histogram(struct buf *out, const char *name, const char *labels, const double *bounds,
                   const uint64_t *counts, size_t nbounds, double sum)
{
    const char *sep = labels && *labels ? "," : "";
    const char *lab = labels ? labels : "";
    uint64_t cum = 0;
    for (size_t i = 0; i < nbounds; i++) {
        cum += counts[i];
        char le[32];
        fmt_double(le, sizeof(le), bounds[i]);
        if (appendf(out, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, lab, sep, le, cum))
            return -ENOMEM;
    }
    cum += counts[nbounds];
    if (appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, lab, sep, cum))
        return -ENOMEM;
    char sname[256];
    snprintf(sname, sizeof(sname), "%s_sum", name);
    if (prom_sample_f(out, sname, labels, sum))
        return -ENOMEM;
    snprintf(sname, sizeof(sname), "%s_count", name);
    return prom_sample(out, sname, labels, cum);
}
