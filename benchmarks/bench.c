/*
 * ringpush-bench: drives one server with one scenario and prints one JSON
 * object with what it measured.
 *
 *   ringpush-bench --driver ringpush|redis|nats|mqtt --port P --scenario S
 *                  [--conns N | --subscribers S | --pairs P] [--window W]
 *                  [--rate MSGS_PER_S] [--duration SECONDS] [--workers N]
 *                  [--src N] [--secret KEY] [--server-pid PID] [--label TEXT]
 *
 * Scenarios: idle (N connections log in, subscribe and stay silent; the
 * server's memory is read before and after), ping (N connections, one ping in
 * flight each), fanout (one publisher, S subscribers of one group/channel),
 * pairs (P sender -> receiver pairs). --rate makes fanout and pairs open loop
 * at that many messages per second in total, still bounded by --window.
 *
 * The run is bounded: connection set-up by --connect-timeout, the load by
 * --duration, every worker by the same phases (gen.h). Workers are processes,
 * so a run may hold more connections than one process's file limit.
 */
#include "gen.h"

#include "base/clock.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONNS_PER_WORKER 16000 /* below the 20,000 file limit, with room */
#define DEFAULT_MAX_MSGS (1u << 22)

struct run {
    struct gen_opts o;
    double duration_s, connect_timeout_s, settle_s;
    int server_pid;
    const char *label;
    const char *scenario_name;
};

struct mem {
    long rss_kb;     /* server VmRSS */
    long sock_pages; /* TCP socket memory of the whole machine */
    long tcp_inuse;
    long slab_kb; /* kernel slab of the whole machine: sockets of both ends */
};

static void usage(void)
{
    fprintf(stderr, "usage: ringpush-bench --driver ringpush|redis|nats|mqtt --port P\n"
                    "       --scenario idle|ping|fanout|pairs [--conns N] [--subscribers S]\n"
                    "       [--pairs P] [--window W] [--rate R] [--duration S] [--workers N]\n"
                    "       [--src N] [--burst N] [--secret KEY] [--server-pid PID]\n"
                    "       [--connect-timeout S] [--settle S] [--label TEXT] [--user-base N]\n"
                    "       [--max-messages N]\n");
}

static long status_kb(int pid, const char *key)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    fclose(f);
    return v;
}

static void mem_read(const struct run *r, struct mem *m)
{
    char line[256];
    m->rss_kb = r->server_pid > 0 ? status_kb(r->server_pid, "VmRSS:") : -1;
    m->sock_pages = m->tcp_inuse = -1;
    m->slab_kb = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "Slab:", 5) == 0)
                m->slab_kb = strtol(line + 5, NULL, 10);
        fclose(f);
    }
    f = fopen("/proc/net/sockstat", "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "TCP:", 4) != 0)
            continue;
        char *p = strstr(line, " mem ");
        char *q = strstr(line, "inuse ");
        if (p)
            m->sock_pages = strtol(p + 5, NULL, 10);
        if (q)
            m->tcp_inuse = strtol(q + 6, NULL, 10);
    }
    fclose(f);
}

static uint64_t sum_ready(struct gen_shared *sh, uint64_t *failed)
{
    uint64_t ready = 0, bad = 0;
    for (unsigned i = 0; i < sh->opts.workers; i++) {
        ready += __atomic_load_n(&sh->w[i].ready, __ATOMIC_RELAXED);
        bad += __atomic_load_n(&sh->w[i].failed, __ATOMIC_RELAXED);
    }
    *failed = bad;
    return ready;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int parse_args(int argc, char **argv, struct run *r)
{
    static const struct option opts[] = {
        {"driver", 1, 0, 'd'},    {"port", 1, 0, 'p'},        {"scenario", 1, 0, 's'},
        {"conns", 1, 0, 'n'},     {"subscribers", 1, 0, 'S'}, {"pairs", 1, 0, 'P'},
        {"window", 1, 0, 'w'},    {"rate", 1, 0, 'r'},        {"duration", 1, 0, 't'},
        {"workers", 1, 0, 'W'},   {"src", 1, 0, 'a'},         {"burst", 1, 0, 'b'},
        {"secret", 1, 0, 'k'},    {"server-pid", 1, 0, 'i'},  {"connect-timeout", 1, 0, 'c'},
        {"settle", 1, 0, 'e'},    {"label", 1, 0, 'l'},       {"max-messages", 1, 0, 'm'},
        {"user-base", 1, 0, 'u'}, {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    struct gen_opts *o = &r->o;
    uint32_t n = 1000, subs = 0, pairs = 0;
    int ch;

    memset(r, 0, sizeof(*r));
    o->window = 1;
    o->nsrc = 64;
    o->burst = 256;
    o->max_messages = DEFAULT_MAX_MSGS;
    o->cfg.secret = getenv("RINGPUSH_SECRET");
    r->duration_s = 10;
    r->connect_timeout_s = 120;
    r->settle_s = 2;
    r->label = "";
    r->scenario_name = "ping";
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            o->drv = drv_find(optarg);
            break;
        case 'p':
            o->port = (uint16_t)atoi(optarg);
            break;
        case 's':
            r->scenario_name = optarg;
            break;
        case 'n':
            n = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            subs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'P':
            pairs = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            o->window = (unsigned)atoi(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 't':
            r->duration_s = atof(optarg);
            break;
        case 'W':
            o->workers = (unsigned)atoi(optarg);
            break;
        case 'a':
            o->nsrc = (unsigned)atoi(optarg);
            break;
        case 'b':
            o->burst = (unsigned)atoi(optarg);
            break;
        case 'k':
            o->cfg.secret = optarg;
            break;
        case 'i':
            r->server_pid = atoi(optarg);
            break;
        case 'c':
            r->connect_timeout_s = atof(optarg);
            break;
        case 'e':
            r->settle_s = atof(optarg);
            break;
        case 'l':
            r->label = optarg;
            break;
        case 'm':
            o->max_messages = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'u':
            o->user_base = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        default:
            return -1;
        }
    }
    if (!o->drv || !o->port || o->nsrc < 1 || o->nsrc > 250 || o->window < 1 || o->burst < 1)
        return -1;
    if (strcmp(r->scenario_name, "idle") == 0) {
        o->scenario = GEN_IDLE;
        o->conns = n;
    } else if (strcmp(r->scenario_name, "ping") == 0) {
        o->scenario = GEN_PING;
        o->conns = n;
    } else if (strcmp(r->scenario_name, "fanout") == 0) {
        o->scenario = GEN_FANOUT;
        o->conns = (subs ? subs : 100) + 1;
    } else if (strcmp(r->scenario_name, "pairs") == 0) {
        o->scenario = GEN_PAIRS;
        o->conns = 2 * (pairs ? pairs : 1000);
    } else {
        return -1;
    }
    if (o->drv == &drv_ringpush && !o->cfg.secret) {
        fprintf(stderr, "ringpush-bench: ringpush needs --secret or RINGPUSH_SECRET\n");
        return -1;
    }
    if (!o->workers)
        o->workers = (o->conns + CONNS_PER_WORKER - 1) / CONNS_PER_WORKER;
    if (o->workers > GEN_MAX_WORKERS || o->workers > o->conns)
        return -1;
    if (o->scenario != GEN_FANOUT)
        o->max_messages = 0;
    snprintf(o->run, sizeof(o->run), "%lx%x", (unsigned long)time(NULL), (unsigned)getpid());
    return 0;
}

static void print_json(const struct run *r, struct gen_shared *sh, const struct mem *before,
                       const struct mem *after, double connect_s, double elapsed_s, uint64_t ready,
                       uint64_t failed)
{
    struct hist *lat = calloc(1, sizeof(*lat));
    struct gen_stats tot = {0};
    const char *err = "";
    char host[256] = "";

    for (unsigned i = 0; i < r->o.workers; i++) {
        struct gen_stats *s = &sh->w[i];
        tot.closed += s->closed;
        tot.errors += s->errors;
        tot.sent += s->sent;
        tot.acks += s->acks;
        tot.received += s->received;
        tot.pongs += s->pongs;
        tot.skipped += s->skipped;
        if (lat)
            hist_merge(lat, &s->lat);
        if (!err[0] && s->first_error[0])
            err = s->first_error;
    }
    gethostname(host, sizeof(host) - 1);
    long n = (long)ready;
    printf("{\"driver\":\"%s\",\"scenario\":\"%s\",\"label\":\"%s\",\"date\":%ld,", r->o.drv->name,
           r->scenario_name, r->label, (long)time(NULL));
    printf("\"conns\":%u,\"ready\":%ld,\"failed\":%lu,\"closed\":%lu,\"errors\":%lu,", r->o.conns,
           n, (unsigned long)failed, (unsigned long)tot.closed, (unsigned long)tot.errors);
    printf("\"workers\":%u,\"window\":%u,\"rate\":%.1f,\"duration_s\":%.3f,\"connect_s\":%.3f,",
           r->o.workers, r->o.window, r->o.rate, elapsed_s, connect_s);
    printf("\"sent\":%lu,\"acks\":%lu,\"received\":%lu,\"pongs\":%lu,\"skipped\":%lu,",
           (unsigned long)tot.sent, (unsigned long)tot.acks, (unsigned long)tot.received,
           (unsigned long)tot.pongs, (unsigned long)tot.skipped);
    double per = elapsed_s > 0 ? 1.0 / elapsed_s : 0;
    printf("\"sent_per_s\":%.1f,\"received_per_s\":%.1f,\"pongs_per_s\":%.1f,",
           (double)tot.sent * per, (double)tot.received * per, (double)tot.pongs * per);
    if (lat)
        printf("\"lat_us\":{\"count\":%lu,\"mean\":%.1f,\"p50\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f},",
               (unsigned long)lat->count, hist_mean(lat) / 1e3, hist_quantile(lat, 0.5) / 1e3,
               hist_quantile(lat, 0.99) / 1e3, hist_quantile(lat, 0.999) / 1e3,
               (double)lat->max / 1e3);
    printf("\"server_pid\":%d,\"rss_kb_before\":%ld,\"rss_kb_after\":%ld,", r->server_pid,
           before->rss_kb, after->rss_kb);
    printf("\"sock_pages_before\":%ld,\"sock_pages_after\":%ld,\"tcp_inuse_before\":%ld,"
           "\"tcp_inuse_after\":%ld,",
           before->sock_pages, after->sock_pages, before->tcp_inuse, after->tcp_inuse);
    if (n > 0 && before->rss_kb >= 0 && after->rss_kb >= 0)
        printf("\"rss_bytes_per_conn\":%.1f,",
               (double)(after->rss_kb - before->rss_kb) * 1024.0 / (double)n);
    printf("\"slab_kb_before\":%ld,\"slab_kb_after\":%ld,", before->slab_kb, after->slab_kb);
    if (n > 0 && before->slab_kb >= 0 && after->slab_kb >= 0)
        printf("\"slab_bytes_per_conn\":%.1f,",
               (double)(after->slab_kb - before->slab_kb) * 1024.0 / (double)n);
    if (n > 0 && before->sock_pages >= 0)
        printf("\"sock_bytes_per_conn\":%.1f,",
               (double)(after->sock_pages - before->sock_pages) * 4096.0 / (double)n);
    printf("\"first_error\":\"");
    for (const char *p = err; *p; p++)
        putchar(*p == '"' || *p == '\\' ? '\'' : (unsigned char)*p < 0x20 ? ' ' : *p);
    printf("\"}\n");
    fflush(stdout);
    free(lat);
}

/* Waits for every connection to be ready (or failed), bounded by the timeout. */
static uint64_t wait_connected(const struct run *r, struct gen_shared *sh, uint64_t *failed)
{
    uint64_t deadline = clock_mono_ns() + (uint64_t)(r->connect_timeout_s * 1e9);
    uint64_t ready = 0, last_print = clock_mono_ns();
    for (;;) {
        ready = sum_ready(sh, failed);
        uint64_t now = clock_mono_ns();
        if (ready + *failed >= r->o.conns || now >= deadline)
            return ready;
        if (now - last_print > 5000000000ull) {
            fprintf(stderr, "ringpush-bench: %lu/%u ready, %lu failed\n", (unsigned long)ready,
                    r->o.conns, (unsigned long)*failed);
            last_print = now;
        }
        sleep_s(0.02);
    }
}

int main(int argc, char **argv)
{
    struct run r;
    struct mem before = {-1, -1, -1, -1}, after = {-1, -1, -1, -1};
    pid_t pids[GEN_MAX_WORKERS];
    uint64_t failed = 0, ready = 0;
    double connect_s = 0, elapsed = 0;
    int rc = 1;

    if (parse_args(argc, argv, &r) < 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    size_t size = gen_shared_size(r.o.max_messages);
    struct gen_shared *sh =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("ringpush-bench: mmap");
        return 1;
    }
    sh->opts = r.o;
    sh->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    atomic_store(&sh->phase, GEN_SETUP);
    for (unsigned i = 0; i < r.o.workers; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(gen_worker_run(sh, i));
        if (pids[i] < 0) {
            perror("ringpush-bench: fork");
            atomic_store(&sh->phase, GEN_STOP);
            r.o.workers = i;
            goto reap;
        }
    }
    if (r.o.scenario == GEN_FANOUT) {
        uint64_t deadline = clock_mono_ns() + (uint64_t)(r.connect_timeout_s * 1e9);
        while (atomic_load(&sh->setup_done) == 0 && clock_mono_ns() < deadline)
            sleep_s(0.01);
        if (atomic_load(&sh->setup_done) != 1) {
            fprintf(stderr, "ringpush-bench: publisher set-up failed: %s\n", sh->w[0].first_error);
            atomic_store(&sh->phase, GEN_STOP);
            goto reap;
        }
    }
    mem_read(&r, &before);
    uint64_t t0 = clock_mono_ns();
    atomic_store(&sh->phase, GEN_CONNECT);
    ready = wait_connected(&r, sh, &failed);
    connect_s = (double)(clock_mono_ns() - t0) / 1e9;
    sleep_s(r.settle_s);
    mem_read(&r, &after);
    ready = sum_ready(sh, &failed);
    uint64_t start = clock_mono_ns();
    atomic_store(&sh->phase, GEN_RUN);
    /* A fan-out run of a fixed number of messages ends when all are delivered,
     * so its duration is the time to deliver them. */
    uint64_t end = start + (uint64_t)(r.duration_s * 1e9);
    while (clock_mono_ns() < end) {
        if (r.o.scenario == GEN_FANOUT && r.o.max_messages < DEFAULT_MAX_MSGS &&
            atomic_load(&sh->completed) >= r.o.max_messages)
            break;
        sleep_s(0.005);
    }
    atomic_store(&sh->phase, GEN_STOP);
    elapsed = (double)(clock_mono_ns() - start) / 1e9;
    rc = 0;
reap:
    for (unsigned i = 0; i < r.o.workers; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            rc = 1;
    }
    if (rc == 0)
        print_json(&r, sh, &before, &after, connect_s, elapsed, ready, failed);
    return rc;
}
