/*
 * One table describes every setting: its name, where it lives in struct
 * config, its kind and its help line. The INI reader, the flag parser and
 * --help all walk that table, so a setting is added in exactly one place.
 */
#include "engine/config.h"

#include "engine/chat/chat.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_U32, K_STR, K_BOOL };

struct setting {
    const char *name; /* INI key; the flag is the same with '-' for '_' */
    enum kind kind;
    size_t off;
    size_t size; /* K_STR: buffer size */
    const char *def;
    const char *help;
};

#define U32(n, d, h)                                                                               \
    {                                                                                              \
#n, K_U32, offsetof(struct config, n), 0, d, h                                             \
    }
#define STR(n, d, h)                                                                               \
    {                                                                                              \
#n, K_STR, offsetof(struct config, n), sizeof(((struct config *)0)->n), d, h               \
    }
#define BOOL(n, d, h)                                                                              \
    {                                                                                              \
#n, K_BOOL, offsetof(struct config, n), 0, d, h                                            \
    }

static const struct setting settings[] = {
    STR(bind, "127.0.0.1", "address of the client and admin listeners"),
    U32(port, "7400", "client port (TCP frames and WebSocket)"),
    U32(admin_port, "7401", "admin HTTP port (0: no admin listener)"),
    STR(data, "./data", "RocksDB directory"),
    STR(secret, "", "JWT HS256 secret (or RINGPUSH_SECRET); required"),
    STR(admin_key, "", "admin API bearer key (or RINGPUSH_ADMIN_KEY)"),
    U32(shards, "0", "shard threads (0: one per online CPU; may exceed the CPU count)"),
    BOOL(pin, "true", "pin shard i to CPU i modulo the CPU count"),
    STR(durability, "sync", "sync | wal | none: when an entry counts as durable"),
    U32(write_pipeline, "1", "write batches a shard keeps in flight to storage (1..16)"),
    U32(max_conns, "19000", "connections per shard (fixed-file table size)"),
    U32(max_frame, "65536", "largest frame in either direction, bytes"),
    U32(max_body, "32768", "largest message body, bytes"),
    U32(heartbeat, "30", "heartbeat advertised to clients, seconds"),
    U32(idle_timeout, "0", "close a connection silent this long, seconds (0: 3 x heartbeat)"),
    U32(hello_timeout, "10", "close a connection without a hello after this long, seconds"),
    U32(catchup_limit, "200", "entries per conversation pushed at login"),
    U32(dedup_window, "86400", "how long a client message id is remembered, seconds"),
    U32(dedup_memory, "1048576",
        "dedup records a shard keeps in memory at most; past it the oldest go at once"),
    U32(cursor_delay_ms, "1000",
        "how long a moved ack or read cursor may wait before it is written, ms (at most 60000)"),
    U32(recall_window, "120", "how long a sender may recall a message, seconds"),
    U32(max_devices, "10", "sessions per user"),
    U32(max_group_size, "100000", "members per group"),
    STR(dm_policy, "open", "open | friends: who may send direct messages"),
    U32(rate_limit, "200", "requests per second per connection (ack and ping exempt)"),
    U32(rate_burst, "400", "request burst per connection"),
    U32(outbound_limit, "4194304", "bytes queued for one connection before bye slow"),
    U32(ring_entries, "4096", "io_uring submission queue entries per shard"),
    U32(xcore_depth, "16384", "messages per cross-shard ring"),
    U32(recv_buffers, "1024", "provided receive buffers per shard (power of two)"),
    U32(recv_buffer_size, "4096", "size of one receive buffer, bytes"),
    U32(block_cache_mb, "256", "RocksDB block cache, MiB"),
    STR(log_level, "info", "debug | info | warn | error"),
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *find_setting(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *a = settings[i].name, *b = name;
        while (*a && (*a == *b || (*a == '_' && *b == '-'))) {
            a++;
            b++;
        }
        if (!*a && !*b)
            return &settings[i];
    }
    return NULL;
}

static int set_value(struct config *cfg, const struct setting *s, const char *v)
{
    char *p = (char *)cfg + s->off;
    switch (s->kind) {
    case K_U32: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || x > UINT32_MAX || v[0] == '-')
            return -EINVAL;
        *(uint32_t *)p = (uint32_t)x;
        return 0;
    }
    case K_STR:
        if (strlen(v) >= s->size)
            return -EINVAL;
        memcpy(p, v, strlen(v) + 1); /* fits: checked above */
        return 0;
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
            *(bool *)p = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
            *(bool *)p = false;
        else
            return -EINVAL;
        return 0;
    }
    return -EINVAL;
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++)
        set_value(cfg, &settings[i], settings[i].def);
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: ringpushd [--config FILE] [--SETTING VALUE ...]\n\n"
                 "Every setting may also be given in the INI file as `setting = value`.\n"
                 "Times are in seconds, sizes in bytes.\n\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        char flag[64];
        size_t j = 0;
        for (const char *c = settings[i].name; *c && j + 1 < sizeof(flag); c++)
            flag[j++] = *c == '_' ? '-' : *c;
        flag[j] = 0;
        fprintf(out, "  --%-18s %s (default: %s)\n", flag, settings[i].help,
                settings[i].def[0] ? settings[i].def : "none");
    }
}

static int on_ini(void *arg, const char *section, const char *name, const char *value)
{
    (void)section;
    const struct setting *s = find_setting(name);
    if (!s || set_value(arg, s, value)) {
        fprintf(stderr, "ringpushd: config file: bad setting %s = %s\n", name, value);
        return 0;
    }
    return 1;
}

static int check(struct config *cfg)
{
    if (!cfg->secret[0]) {
        fprintf(stderr, "ringpushd: a secret is required (--secret or RINGPUSH_SECRET)\n");
        return -EINVAL;
    }
    if (strcmp(cfg->durability, "sync") && strcmp(cfg->durability, "wal") &&
        strcmp(cfg->durability, "none")) {
        fprintf(stderr, "ringpushd: --durability must be sync, wal or none\n");
        return -EINVAL;
    }
    if (strcmp(cfg->dm_policy, "open") && strcmp(cfg->dm_policy, "friends")) {
        fprintf(stderr, "ringpushd: --dm-policy must be open or friends\n");
        return -EINVAL;
    }
    if (cfg->max_frame < CHAT_MAX_FRAME_MIN) {
        fprintf(stderr, "ringpushd: --max-frame must be at least %u\n", CHAT_MAX_FRAME_MIN);
        return -EINVAL;
    }
    /* A message body travels inside a frame with its envelope: keep room. */
    if (cfg->max_body > cfg->max_frame - CHAT_FRAME_RESERVE)
        cfg->max_body = cfg->max_frame - CHAT_FRAME_RESERVE;
    if (!cfg->port || cfg->port > 65535 || cfg->admin_port > 65535) {
        fprintf(stderr, "ringpushd: ports must be 1..65535\n");
        return -EINVAL;
    }
    if (cfg->recv_buffers & (cfg->recv_buffers - 1) || cfg->recv_buffers > 32768) {
        fprintf(stderr, "ringpushd: --recv-buffers must be a power of two <= 32768\n");
        return -EINVAL;
    }
    if (cfg->cursor_delay_ms > 60000) {
        fprintf(stderr, "ringpushd: cursor-delay-ms must be 0..60000\n");
        return -EINVAL;
    }
    if (cfg->write_pipeline < 1 || cfg->write_pipeline > 16) {
        fprintf(stderr, "ringpushd: write-pipeline must be 1..16\n");
        return -EINVAL;
    }
    if (!cfg->max_conns || !cfg->heartbeat || !cfg->hello_timeout || !cfg->max_devices) {
        fprintf(stderr,
                "ringpushd: max-conns, heartbeat, hello-timeout and max-devices must be > 0\n");
        return -EINVAL;
    }
    /* times become milliseconds, the rate burst thousandths of a request: in 32 bits */
    if (cfg->heartbeat > CONFIG_SECONDS_MAX || cfg->hello_timeout > CONFIG_SECONDS_MAX ||
        cfg->idle_timeout > 3 * CONFIG_SECONDS_MAX) {
        fprintf(stderr,
                "ringpushd: heartbeat and hello-timeout must be <= %u s, idle-timeout <= %u s\n",
                CONFIG_SECONDS_MAX, 3 * CONFIG_SECONDS_MAX);
        return -EINVAL;
    }
    if (!cfg->rate_limit || cfg->rate_limit > CONFIG_RATE_MAX || !cfg->rate_burst ||
        cfg->rate_burst > CONFIG_RATE_MAX) {
        fprintf(stderr, "ringpushd: rate-limit and rate-burst must be 1..%u\n", CONFIG_RATE_MAX);
        return -EINVAL;
    }
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error")) {
        fprintf(stderr, "ringpushd: --log-level must be debug, info, warn or error\n");
        return -EINVAL;
    }
    return 0;
}

/* A secret or key from the environment, which overrides the file: too long is an error. */
static int from_env(struct config *cfg, const char *var, const char *setting)
{
    const char *env = getenv(var);
    if (env && *env && set_value(cfg, find_setting(setting), env)) {
        fprintf(stderr, "ringpushd: %s is too long\n", var);
        return -EINVAL;
    }
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv)
{
    /* The config file first, so that flags override it wherever they stand. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            config_usage(stdout);
            return 1;
        }
        /* --config=FILE or --config FILE */
        bool joined = !strncmp(a, "--config=", 9);
        if (joined || (!strcmp(a, "--config") && i + 1 < argc)) {
            const char *file = joined ? a + 9 : argv[i + 1];
            int r = ini_parse(file, on_ini, cfg);
            if (r < 0) {
                fprintf(stderr, "ringpushd: cannot read config %s\n", file);
                return -EINVAL;
            }
            if (r) {
                fprintf(stderr, "ringpushd: config %s: error at line %d\n", file, r);
                return -EINVAL;
            }
        }
    }
    if (from_env(cfg, "RINGPUSH_SECRET", "secret") ||
        from_env(cfg, "RINGPUSH_ADMIN_KEY", "admin_key"))
        return -EINVAL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "ringpushd: unexpected argument %s (see --help)\n", a);
            return -EINVAL;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        char name[64];
        const char *value;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof(name)) {
            fprintf(stderr, "ringpushd: unknown setting --%s\n", a);
            return -EINVAL;
        }
        memcpy(name, a, nlen);
        name[nlen] = 0;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "ringpushd: --%s needs a value\n", name);
            return -EINVAL;
        }
        if (!strcmp(name, "config"))
            continue;
        const struct setting *s = find_setting(name);
        if (!s) {
            fprintf(stderr, "ringpushd: unknown setting --%s (see --help)\n", name);
            return -EINVAL;
        }
        if (set_value(cfg, s, value)) {
            fprintf(stderr, "ringpushd: bad value for --%s: %s\n", name, value);
            return -EINVAL;
        }
    }
    if (!cfg->idle_timeout)
        cfg->idle_timeout = 3 * cfg->heartbeat;
    return check(cfg);
}
