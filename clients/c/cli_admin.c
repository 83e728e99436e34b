/*
 * `ringpush stats` and `ringpush admin ...`: the commands that speak HTTP to
 * the admin port (PROTOCOL §7) rather than the wire protocol to the client
 * port.
 *
 * stats reads /metrics once and prints one line per subject, a label in the
 * first 18 columns and then the numbers, so that a person reads it at a
 * glance and a script can still pick a line by its label. Families the
 * server does not export print "-", and any ringpush_ family this tool does
 * not know (newer servers) is listed at the end, summed over its labels, so
 * nothing the server measures is hidden.
 */
#include "admin.h"
#include "cli.h"
#include "metrics.h"

#include "base/err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_LIMIT (64u << 10) /* the admin port's request body bound */

/* ---- admin key and requests ------------------------------------------ */

/* The key from --admin-key, --admin-key-file (trailing whitespace dropped) or RINGPUSH_ADMIN_KEY.
 */
static int load_admin_key(struct opts *o)
{
    if (!o->admin_key && o->admin_key_file) {
        FILE *f = fopen(o->admin_key_file, "rb");
        if (!f)
            return cli_fail(o->admin_key_file, -errno);
        size_t n = fread(o->admin_key_buf, 1, CLI_SECRET_LIMIT, f);
        fclose(f);
        while (n > 0 && strchr(" \t\r\n", o->admin_key_buf[n - 1]))
            n--;
        o->admin_key_buf[n] = '\0';
        o->admin_key = o->admin_key_buf;
    }
    if (!o->admin_key)
        o->admin_key = getenv("RINGPUSH_ADMIN_KEY");
    if (!o->admin_key || !*o->admin_key) {
        fprintf(stderr, "ringpush: no admin key: use --admin-key, --admin-key-file or "
                        "RINGPUSH_ADMIN_KEY\n");
        return EXIT_USAGE;
    }
    return 0;
}

/*
 * One request; on 0 *resp holds a 200 response. Any other status is reported
 * ("error: <status> <code>: <msg>" from the JSON error body) and is EXIT_FAIL.
 */
static int admin_call(struct opts *o, const char *method, const char *path, const char *body,
                      struct rp_admin_resp *resp)
{
    int rc = load_admin_key(o);
    if (rc)
        return rc;
    int r = rp_admin_request(o->admin_host, o->admin_port, o->admin_key, method, path, body,
                             body ? strlen(body) : 0, o->timeout_ms, resp);
    if (r < 0) {
        fprintf(stderr, "ringpush: admin %s:%u: %s\n", o->admin_host, o->admin_port, err_str(r));
        return EXIT_FAIL;
    }
    if (resp->status == 200)
        return 0;
    fprintf(stderr, "error: %d %s\n", resp->status, resp->body);
    rp_admin_resp_free(resp);
    return EXIT_FAIL;
}

/* ---- stats ------------------------------------------------------------ */

/* Sum of a family's samples matching one optional label; NAN when there is none. */
static double get(const struct rp_metrics *m, const char *name, const char *k, const char *v)
{
    const char *match[] = {k, v};
    double sum;
    return rp_metrics_sum(m, name, match, k ? 1 : 0, &sum) ? sum : NAN;
}

static void put_num(double v)
{
    if (isnan(v))
        fputs("-", stdout);
    else if (v == floor(v) && fabs(v) < 1e18)
        printf("%.0f", v);
    else
        printf("%g", v);
}

static void put_bytes(double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    put_num(v);
    if (isnan(v) || v < 1024)
        return;
    unsigned u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    printf(" (%.1f %s)", v, units[u]);
}

/* "label   a 1, b 2" for one family split by one label. */
static void line_split(const struct rp_metrics *m, const char *label, const char *name,
                       const char *key, const char *const *values, size_t n, bool bytes)
{
    printf("%-18s", label);
    for (size_t i = 0; i < n; i++) {
        printf("%s%s ", i ? ", " : "", values[i]);
        double v = get(m, name, key, values[i]);
        if (bytes)
            put_bytes(v);
        else
            put_num(v);
    }
    fputc('\n', stdout);
}

static void line_one(const struct rp_metrics *m, const char *label, const char *name)
{
    printf("%-18s", label);
    put_num(get(m, name, NULL, NULL));
    fputc('\n', stdout);
}

/* "connections  3 (shard 0: 2, shard 1: 1)" */
static void line_per_shard(const struct rp_metrics *m, const char *label, const char *name)
{
    printf("%-18s", label);
    put_num(get(m, name, NULL, NULL));
    const char *sep = " (";
    for (size_t i = 0; i < m->n; i++) {
        const struct rp_sample *s = &m->samples[i];
        const char *shard = strcmp(s->name, name) == 0 ? rp_sample_label(s, "shard") : NULL;
        if (!shard)
            continue;
        printf("%sshard %s: ", sep, shard);
        put_num(s->value);
        sep = ", ";
    }
    puts(*sep == ',' ? ")" : "");
}

static void line_rings(const struct rp_metrics *m)
{
    const char *name = "ringpush_xcore_ring_depth";
    double max = NAN, total = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->samples[i].name, name) == 0) {
            double v = m->samples[i].value;
            max = isnan(max) || v > max ? v : max;
            total += v;
        }
    }
    printf("%-18smax ", "ring depths");
    put_num(max);
    printf(", total ");
    put_num(isnan(max) ? NAN : total);
    const char *sep = " (";
    for (size_t i = 0; i < m->n; i++) {
        const struct rp_sample *s = &m->samples[i];
        const char *from = rp_sample_label(s, "from"), *to = rp_sample_label(s, "to");
        if (strcmp(s->name, name) == 0 && s->value > 0 && from && to) {
            printf("%s%s->%s: ", sep, from, to);
            put_num(s->value);
            sep = ", ";
        }
    }
    puts(*sep == ',' ? ")" : "");
}

static void line_latency(const struct rp_metrics *m)
{
    double p50, p99, count = 0;
    const char *h = "ringpush_storage_commit_seconds";
    int r = rp_metrics_quantile(m, h, 0.5, &p50, &count);
    printf("%-18s", "commit latency");
    if (r == 0 && (r = rp_metrics_quantile(m, h, 0.99, &p99, NULL)) == 0)
        printf("p50 %.3f ms, p99 %.3f ms (%.0f commits)\n", p50 * 1e3, p99 * 1e3, count);
    else if (r == -ENODATA)
        puts("no commits yet");
    else
        puts("-");
}

/* Families this summary shows by name; the rest of ringpush_* is listed as "other". */
static const char *const known[] = {
    "ringpush_shards",
    "ringpush_connections",
    "ringpush_accepts_total",
    "ringpush_closes_total",
    "ringpush_hellos_total",
    "ringpush_handoffs_total",
    "ringpush_frames_total",
    "ringpush_bytes_total",
    "ringpush_bye_slow_total",
    "ringpush_rate_limited_total",
    "ringpush_xcore_full_total",
    "ringpush_xcore_ring_depth",
    "ringpush_storage_groups_total",
    "ringpush_storage_batches_total",
    "ringpush_storage_ops_total",
    "ringpush_storage_write_errors_total",
    "ringpush_storage_reads_total",
    "ringpush_storage_read_errors_total",
    "ringpush_storage_group_batches",
    "ringpush_storage_commit_seconds",
    "ringpush_admin_requests_total",
    "ringpush_admin_timeouts_total",
    "ringpush_admin_connections",
    "ringpush_backups_total",
};

static bool is_known(const char *name)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        size_t n = strlen(known[i]);
        if (strncmp(name, known[i], n) == 0 &&
            (!name[n] || !strcmp(name + n, "_bucket") || !strcmp(name + n, "_sum") ||
             !strcmp(name + n, "_count")))
            return true;
    }
    return false;
}

static bool ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), k = strlen(end);
    return n >= k && strcmp(s + n - k, end) == 0;
}

/* Every other ringpush_ family (entries, deliveries, ...), summed over its
 * labels, once; a histogram by its _count and _sum (its buckets are
 * cumulative: no sum of them means anything). */
static void lines_other(const struct rp_metrics *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *name = m->samples[i].name;
        if (strncmp(name, "ringpush_", 9) != 0 || is_known(name) || ends_with(name, "_bucket"))
            continue;
        size_t j = 0;
        while (j < i && strcmp(m->samples[j].name, name) != 0)
            j++;
        if (j < i)
            continue; /* printed with its first sample */
        char label[64];
        snprintf(label, sizeof(label), "%s", name + 9);
        printf("%-17s ", label);
        put_num(get(m, name, NULL, NULL));
        fputc('\n', stdout);
    }
}

static void print_summary(const struct opts *o, const struct rp_metrics *m)
{
    static const char *const io[] = {"in", "out"};
    static const char *const hellos[] = {"ok", "unauthorized", "bad_request"};
    static const char *const admin[] = {"ok", "unauthorized", "error"};
    static const char *const backups[] = {"ok", "failed"};
    printf("ringpush at %s:%u\n", o->admin_host, o->admin_port);
    line_one(m, "shards", "ringpush_shards");
    line_per_shard(m, "connections", "ringpush_connections");
    line_per_shard(m, "accepted", "ringpush_accepts_total");
    line_per_shard(m, "closed", "ringpush_closes_total");
    line_split(m, "hellos", "ringpush_hellos_total", "outcome", hellos, 3, false);
    line_split(m, "handoffs", "ringpush_handoffs_total", "dir", io, 2, false);
    line_split(m, "frames", "ringpush_frames_total", "dir", io, 2, false);
    line_split(m, "bytes", "ringpush_bytes_total", "dir", io, 2, true);
    line_per_shard(m, "bye slow", "ringpush_bye_slow_total");
    line_per_shard(m, "rate limited", "ringpush_rate_limited_total");
    line_per_shard(m, "xcore full", "ringpush_xcore_full_total");
    line_rings(m);
    line_one(m, "storage commits", "ringpush_storage_groups_total");
    line_one(m, "storage batches", "ringpush_storage_batches_total");
    line_one(m, "storage ops", "ringpush_storage_ops_total");
    line_one(m, "write errors", "ringpush_storage_write_errors_total");
    line_one(m, "storage reads", "ringpush_storage_reads_total");
    line_one(m, "read errors", "ringpush_storage_read_errors_total");
    line_latency(m);
    line_split(m, "admin requests", "ringpush_admin_requests_total", "result", admin, 3, false);
    line_one(m, "admin timeouts", "ringpush_admin_timeouts_total");
    line_split(m, "backups", "ringpush_backups_total", "result", backups, 2, false);
    lines_other(m);
    fflush(stdout);
}

int cli_stats_run(struct opts *o)
{
    if (!cli_need(o, 0, 0))
        return -1;
    struct rp_admin_resp resp;
    int rc = admin_call(o, "GET", "/metrics", NULL, &resp);
    if (rc)
        return rc;
    struct rp_metrics m;
    size_t bad = 0;
    int r = rp_metrics_parse(&m, resp.body, resp.body_len, &bad);
    rp_admin_resp_free(&resp);
    if (r < 0) {
        if (r == -RP_EFRAME)
            fprintf(stderr, "ringpush: /metrics line %zu is not Prometheus text\n", bad);
        else
            cli_fail("metrics", r);
        return EXIT_FAIL;
    }
    print_summary(o, &m);
    rp_metrics_free(&m);
    return 0;
}

/* ---- admin ------------------------------------------------------------ */

/* /v1/users/<user>[suffix] with the user id percent-encoded. */
static int user_path(char *out, size_t cap, const char *user, const char *suffix)
{
    size_t n = (size_t)snprintf(out, cap, "/v1/users/");
    for (const unsigned char *p = (const unsigned char *)user; *p && n + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("_.@-", *p))
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
    }
    if (n + strlen(suffix) + 1 > cap)
        return -RP_ETOOLARGE;
    snprintf(out + n, cap - n, "%s", suffix);
    return 0;
}

/* {"from":..,"to"|"group":..,"type":..,"body":..,"cmid":..} into out. */
static int message_body(struct opts *o, char *out, size_t cap)
{
    char cmid[64];
    if (!o->cmid)
        cli_make_cmid(cmid, sizeof(cmid));
    const char *kv[][2] = {
        {"from", o->pos[1]},
        {o->group ? "group" : "to", o->group ? o->group : o->pos[2]},
        {"type", o->type},
        {"body", o->pos[o->npos - 1]},
        {"cmid", o->cmid ? o->cmid : cmid},
    };
    int n = 0;
    out[n++] = '{';
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        if (i)
            out[n++] = ',';
        if ((n = rp_json_quote(out, cap, (size_t)n, kv[i][0])) < 0 || (size_t)n + 2 >= cap)
            return -RP_ETOOLARGE;
        out[n++] = ':';
        if ((n = rp_json_quote(out, cap, (size_t)n, kv[i][1])) < 0 || (size_t)n + 2 >= cap)
            return -RP_ETOOLARGE;
    }
    out[n++] = '}';
    out[n] = '\0';
    return 0;
}

int cli_admin_run(struct opts *o)
{
    if (!cli_need(o, 2, 4))
        return -1;
    const char *sub = o->pos[0];
    char path[512];
    const char *method = "POST", *body = NULL;
    static char json[BODY_LIMIT];
    if (!strcmp(sub, "send")) {
        if (!(o->group ? cli_need(o, 3, 3) : cli_need(o, 4, 4)))
            return -1;
        snprintf(path, sizeof(path), "/v1/messages");
        if (message_body(o, json, sizeof(json)) < 0)
            return cli_fail("admin send", -RP_ETOOLARGE);
        body = json;
    } else if (!strcmp(sub, "presence") || !strcmp(sub, "kick")) {
        if (!cli_need(o, 2, 2))
            return -1;
        bool kick = !strcmp(sub, "kick");
        if (user_path(path, sizeof(path), o->pos[1], kick ? "/kick" : "") < 0)
            return cli_fail("user", -RP_ETOOLARGE);
        method = kick ? "POST" : "GET";
        body = kick ? "" : NULL;
    } else if (!strcmp(sub, "backup")) {
        if (!cli_need(o, 2, 2))
            return -1;
        snprintf(path, sizeof(path), "/v1/backup");
        int n = snprintf(json, sizeof(json), "{\"dir\":");
        n = rp_json_quote(json, sizeof(json), (size_t)n, o->pos[1]);
        if (n < 0 || (size_t)n + 2 > sizeof(json))
            return cli_fail("admin backup", -RP_ETOOLARGE);
        snprintf(json + n, sizeof(json) - (size_t)n, "}");
        body = json;
    } else {
        return -1;
    }
    struct rp_admin_resp resp;
    int rc = admin_call(o, method, path, body, &resp);
    if (rc)
        return rc;
    printf("%s%s", resp.body, resp.body_len && resp.body[resp.body_len - 1] == '\n' ? "" : "\n");
    fflush(stdout);
    rp_admin_resp_free(&resp);
    return 0;
}
