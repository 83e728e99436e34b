/*
 * Prometheus text parsing and queries (see metrics.h).
 *
 * The text is copied once and parsed in place: names and label names are
 * NUL-terminated where they stand, and label values are unescaped in place
 * (unescaping only shrinks them). The sample and label arrays are sized up
 * front from an upper bound (one sample per line, one label per '='), so no
 * pointer into them ever moves while parsing.
 */
#include "metrics.h"

#include "base/err.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static char *skip_blank(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parses `"value"` at p, unescaping in place; returns the char after the closing quote. */
static char *parse_quoted(char *p, char **value)
{
    if (*p != '"')
        return NULL;
    char *out = ++p;
    *value = out;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') {
            *out++ = *p;
            continue;
        }
        p++;
        if (*p == 'n')
            *out++ = '\n';
        else if (*p == '\\' || *p == '"')
            *out++ = *p;
        else
            return NULL;
    }
    if (*p != '"')
        return NULL;
    *out = '\0'; /* at or before the closing quote, which is not needed any more */
    return p + 1;
}

/* Parses `{k="v",...}` at p into the label pool; returns the char after '}'. */
static char *parse_labels(char *p, struct rp_metrics *m, struct rp_sample *s)
{
    p = skip_blank(p + 1);
    s->labels = m->label_pool + m->nlabel_pool;
    while (*p != '}') {
        if (!is_name_start(*p))
            return NULL;
        char *name = p;
        while (is_name_char(*p))
            p++;
        char *name_end = p;
        p = skip_blank(p);
        if (*p != '=')
            return NULL;
        *name_end = '\0';
        char *value;
        p = parse_quoted(skip_blank(p + 1), &value);
        if (!p)
            return NULL;
        m->label_pool[m->nlabel_pool++] = (struct rp_label){.name = name, .value = value};
        s->nlabels++;
        p = skip_blank(p);
        if (*p == ',')
            p = skip_blank(p + 1);
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

static int parse_value(char *p, double *v)
{
    char *end;
    p = skip_blank(p);
    if (!*p)
        return -1;
    *v = strtod(p, &end);
    if (end == p || (*end && *end != ' ' && *end != '\t'))
        return -1;
    end = skip_blank(end);
    if (*end) { /* an optional timestamp: an integer */
        strtoll(end, &p, 10);
        if (p == end || *skip_blank(p))
            return -1;
    }
    return 0;
}

/* Parses one NUL-terminated line; 0 (a sample was added or the line is a comment) or -1. */
static int parse_line(char *line, struct rp_metrics *m)
{
    line = skip_blank(line);
    if (*line == '\0' || *line == '#')
        return 0;
    if (!is_name_start(*line))
        return -1;
    struct rp_sample *s = &m->samples[m->n];
    *s = (struct rp_sample){.name = line};
    char *p = line;
    while (is_name_char(*p))
        p++;
    char *name_end = p;
    size_t labels_before = m->nlabel_pool;
    if (*p == '{') {
        p = parse_labels(p, m, s);
        if (!p)
            goto undo;
    } else if (*p != ' ' && *p != '\t') {
        return -1;
    }
    if (parse_value(p, &s->value) < 0)
        goto undo;
    *name_end = '\0'; /* only now: '{' or a blank stood there */
    m->n++;
    return 0;
undo:
    m->nlabel_pool = labels_before;
    return -1;
}

int rp_metrics_parse(struct rp_metrics *m, const char *text, size_t len, size_t *bad_line)
{
    memset(m, 0, sizeof(*m));
    size_t lines = 1, eqs = 0;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
        eqs += text[i] == '=';
    }
    m->text = malloc(len + 1);
    m->samples = calloc(lines, sizeof(*m->samples));
    m->label_pool = calloc(eqs + 1, sizeof(*m->label_pool));
    if (!m->text || !m->samples || !m->label_pool) {
        rp_metrics_free(m);
        return -ENOMEM;
    }
    m->cap = lines;
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    size_t lineno = 0;
    for (char *line = m->text; line; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            if (nl > line && nl[-1] == '\r')
                nl[-1] = '\0';
        }
        if (parse_line(line, m) < 0) {
            if (bad_line)
                *bad_line = lineno + 1;
            rp_metrics_free(m);
            return -RP_EFRAME;
        }
        line = nl ? nl + 1 : NULL;
    }
    return (int)m->n;
}

void rp_metrics_free(struct rp_metrics *m)
{
    free(m->text);
    free(m->samples);
    free(m->label_pool);
    memset(m, 0, sizeof(*m));
}

const char *rp_sample_label(const struct rp_sample *s, const char *name)
{
    for (size_t i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].name, name) == 0)
            return s->labels[i].value;
    return NULL;
}

bool rp_sample_match(const struct rp_sample *s, const char *name, const char *const *match,
                     size_t nmatch)
{
    if (strcmp(s->name, name) != 0)
        return false;
    for (size_t i = 0; i + 1 < 2 * nmatch; i += 2) {
        const char *v = rp_sample_label(s, match[i]);
        if (!v || strcmp(v, match[i + 1]) != 0)
            return false;
    }
    return true;
}

size_t rp_metrics_sum(const struct rp_metrics *m, const char *name, const char *const *match,
                      size_t nmatch, double *sum)
{
    size_t k = 0;
    *sum = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (rp_sample_match(&m->samples[i], name, match, nmatch)) {
            *sum += m->samples[i].value;
            k++;
        }
    }
    return k;
}

struct bucket {
    double le, count;
};

static int cmp_bucket(const void *a, const void *b)
{
    double x = ((const struct bucket *)a)->le, y = ((const struct bucket *)b)->le;
    return x < y ? -1 : x > y;
}

/* Collects hist's buckets, merging equal bounds (other labels summed). Returns how many. */
static size_t collect_buckets(const struct rp_metrics *m, const char *bname, struct bucket *b)
{
    size_t nb = 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct rp_sample *s = &m->samples[i];
        const char *le = strcmp(s->name, bname) == 0 ? rp_sample_label(s, "le") : NULL;
        if (!le)
            continue;
        double bound = strtod(le, NULL);
        size_t j = 0;
        while (j < nb && b[j].le != bound)
            j++;
        if (j == nb)
            b[nb++] = (struct bucket){.le = bound};
        b[j].count += s->value;
    }
    qsort(b, nb, sizeof(*b), cmp_bucket);
    return nb;
}

int rp_metrics_quantile(const struct rp_metrics *m, const char *hist, double q, double *out,
                        double *count)
{
    if (!(q > 0 && q < 1))
        return -EINVAL;
    char bname[256];
    if ((size_t)snprintf(bname, sizeof(bname), "%s_bucket", hist) >= sizeof(bname))
        return -ENOENT;
    struct bucket *b = calloc(m->n + 1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    int r = 0;
    size_t nb = collect_buckets(m, bname, b);
    if (nb == 0) {
        r = -ENOENT;
        goto free_b;
    }
    if (!isinf(b[nb - 1].le)) {
        r = -EINVAL;
        goto free_b;
    }
    for (size_t i = 1; i < nb; i++) {
        if (b[i].count < b[i - 1].count) {
            r = -EINVAL;
            goto free_b;
        }
    }
    double total = b[nb - 1].count;
    if (count)
        *count = total;
    if (total <= 0) {
        r = -ENODATA;
        goto free_b;
    }
    double rank = q * total;
    size_t i = 0;
    while (b[i].count < rank)
        i++;
    if (isinf(b[i].le)) {
        *out = nb > 1 ? b[nb - 2].le : 0;
        goto free_b;
    }
    double lo = i ? b[i - 1].le : 0, below = i ? b[i - 1].count : 0;
    double in = b[i].count - below;
    *out = in > 0 ? lo + (b[i].le - lo) * (rank - below) / in : b[i].le;
free_b:
    free(b);
    return r;
}
