/*
 * Per-shard counters, written only by the shard's thread and read (relaxed)
 * by the metrics endpoint. Plain 64-bit stores are atomic on the platforms
 * ringpush runs on; readers may see a value one iteration old.
 */
#ifndef RP_ENGINE_STATS_H
#define RP_ENGINE_STATS_H

#include <stdint.h>

struct shard_stats {
    uint64_t conns; /* connections open on this shard (edge and home) */
    uint64_t accepts;
    uint64_t accept_pauses; /* accepting paused for a tick: out of descriptors or memory */
    uint64_t hello_ok;
    uint64_t hello_unauthorized;
    uint64_t hello_bad;
    uint64_t handoffs_out;
    uint64_t handoffs_in;
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t bye_slow;
    uint64_t rate_limited;
    uint64_t xcore_full;
    uint64_t closes;
};

#endif
