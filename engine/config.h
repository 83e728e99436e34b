/*
 * Server configuration: built-in defaults, then an INI file (--config), then
 * environment (RINGPUSH_SECRET, RINGPUSH_ADMIN_KEY), then command-line flags.
 * Every setting has one name: `max_frame` in the INI file, `--max-frame` on the
 * command line. Times are in seconds, sizes in bytes. The config is immutable
 * once the shards start.
 */
#ifndef RP_ENGINE_CONFIG_H
#define RP_ENGINE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Upper bounds that keep derived values in 32 bits: heartbeat and
 * hello_timeout (idle_timeout: three times this), in seconds; rate_limit and
 * rate_burst, in requests. */
#define CONFIG_SECONDS_MAX 86400u
#define CONFIG_RATE_MAX    1000000u

struct config {
    char bind[64];
    uint32_t port;
    uint32_t admin_port;
    char data[256];
    char secret[256];
    char admin_key[256];
    char durability[8];
    char dm_policy[8];
    char log_level[8];
    uint32_t shards;    /* 0: one per online CPU */
    uint32_t max_conns; /* per shard; bounded by the fixed-file table */
    uint32_t max_frame;
    uint32_t max_body;
    uint32_t heartbeat;
    uint32_t idle_timeout; /* 0: 3 x heartbeat */
    uint32_t hello_timeout;
    uint32_t catchup_limit;
    uint32_t write_pipeline;
    uint32_t dedup_window;
    uint32_t dedup_memory;    /* dedup records kept in memory per shard, at most */
    uint32_t cursor_delay_ms; /* how long a moved cursor may wait for its write */
    uint32_t recall_window;
    uint32_t max_devices;
    uint32_t max_group_size;
    uint32_t rate_limit;
    uint32_t rate_burst;
    uint32_t outbound_limit;
    uint32_t ring_entries; /* io_uring submission queue size per shard */
    uint32_t xcore_depth;  /* elements per cross-shard ring */
    uint32_t recv_buffers; /* provided receive buffers per shard */
    uint32_t recv_buffer_size;
    uint32_t block_cache_mb;
    bool pin; /* pin shard threads to CPUs */
};

/* Fills in the defaults. */
void config_defaults(struct config *cfg);

/*
 * Applies the config file named by --config (if any), the environment and the
 * flags in argv. Returns 0; 1 when --help was printed (exit 0); -EINVAL after
 * printing the reason to stderr.
 */
int config_load(struct config *cfg, int argc, char **argv);

/* Prints every setting with its default and meaning. */
void config_usage(FILE *out);

#endif
