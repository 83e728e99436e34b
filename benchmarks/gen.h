/*
 * gen: one load-generator worker process. The parent (bench.c) forks workers
 * after filling a struct gen_shared in anonymous shared memory; each worker
 * drives its contiguous slice of the run's connections through one epoll loop
 * and follows the phases the parent sets:
 *
 *   GEN_SETUP    worker 0 logs in the fan-out publisher and, for ringpush,
 *                makes every subscriber a member of the run's group
 *   GEN_CONNECT  every worker connects, logs in and subscribes its slice, at
 *                most opts.burst connections in progress at a time
 *   GEN_RUN      the scenario's load; only what happens in this phase counts
 *   GEN_STOP     workers write their counters and exit
 *
 * Connection roles by global index i (0 <= i < conns), with users named
 * u<user_base + i> so that several generators can share one server:
 *   idle    every connection logs in as user u<i> and subscribes to u<i>
 *   ping    every connection logs in and keeps one ping in flight
 *   fanout  0 is the publisher; 1..conns-1 subscribe to the group g<run>
 *   pairs   even i sends to user u<i+1>; odd i subscribes to u<i>
 *
 * Thread: single-threaded processes; counters in gen_shared are written by
 * one worker each (struct gen_stats) or atomically (phase, completed,
 * delivered[]).
 */
#ifndef RP_BENCH_GEN_H
#define RP_BENCH_GEN_H

#include "drv.h"
#include "hist.h"

#include <stdatomic.h>
#include <stdint.h>

#define GEN_MAX_WORKERS 128

enum gen_phase { GEN_SETUP, GEN_CONNECT, GEN_RUN, GEN_STOP };
enum gen_scenario { GEN_IDLE, GEN_PING, GEN_FANOUT, GEN_PAIRS };

/* Immutable once workers are forked. */
struct gen_opts {
    const struct drv *drv;
    struct drv_cfg cfg;
    enum gen_scenario scenario;
    uint16_t port;  /* server port on 127.0.0.1 */
    unsigned nsrc;  /* source addresses 127.0.0.2 .. 127.0.0.(1+nsrc) */
    uint32_t conns; /* connections in the whole run */
    unsigned workers;
    unsigned window;       /* messages in flight per sender (closed loop) */
    double rate;           /* messages/s over all senders; 0: closed loop */
    uint32_t max_messages; /* fan-out: size of delivered[] */
    unsigned burst;        /* connections in progress per worker */
    uint32_t user_base;    /* first user number */
    char run[24];          /* names this run's group */
};

/* What one worker counted; written only by that worker. */
struct gen_stats {
    uint64_t ready;  /* connections logged in and subscribed */
    uint64_t failed; /* connections that never got ready */
    uint64_t closed; /* ready connections the server closed */
    uint64_t errors; /* error replies */
    uint64_t sent;   /* publishes during GEN_RUN */
    uint64_t acks;
    uint64_t received; /* stamped messages received during GEN_RUN */
    uint64_t pongs;    /* during GEN_RUN */
    uint64_t skipped;  /* rate mode: sends due while the window was full */
    uint64_t done;     /* the worker has written its final counters */
    struct hist lat;   /* ns: publish to receive, or ping round trip */
    char first_error[96];
};

struct gen_shared {
    struct gen_opts opts;
    _Atomic int phase;
    _Atomic int setup_done;     /* 1 ok, -1 failed */
    _Atomic uint64_t completed; /* fan-out messages delivered to every subscriber */
    int efd;                    /* eventfd: a fan-out message completed */
    struct gen_stats w[GEN_MAX_WORKERS];
    _Atomic uint32_t delivered[]; /* fan-out: per message seq, receivers so far */
};

/* Bytes to map for a run with max_messages fan-out messages. */
size_t gen_shared_size(uint32_t max_messages);

/*
 * Runs worker `id` (0 <= id < opts.workers) until GEN_STOP; returns the process
 * exit status (0, or 1 when the worker could not start). Call in a forked child.
 */
int gen_worker_run(struct gen_shared *sh, unsigned id);

/* The slice [*lo, *hi) of connection indices of worker id. */
void gen_slice(const struct gen_opts *o, unsigned id, uint32_t *lo, uint32_t *hi);

#endif
