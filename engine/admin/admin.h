/*
 * The admin HTTP server (PROTOCOL §7): a separate listener owned by shard 0's
 * io_uring, serving /healthz, /metrics and the backend API. Requests that
 * concern a user or a conversation are carried to the shard that owns it and
 * answered when the result comes back.
 *
 * Thread: every function runs on shard 0's thread.
 */
#ifndef RP_ENGINE_ADMIN_ADMIN_H
#define RP_ENGINE_ADMIN_ADMIN_H

#include "engine/chat/chat.h"

#include <liburing.h>

struct shard;

/* Opens the admin listener (cfg admin_port; 0 means none) and arms its
 * accept. Called once on shard 0 after its ring is set up. 0 or -errno. */
int admin_start(struct shard *sh);

/* A completion whose user_data carries UOP_ADMIN. */
void admin_on_cqe(struct shard *sh, struct io_uring_cqe *cqe);

/* The chat layer's answer to a chat_admin_* call made by the admin server
 * (env->admin_done of shard 0): answers the HTTP request named by tag. res is
 * borrowed for the call. */
void admin_chat_done(struct shard *sh, uint64_t tag, const struct chat_admin_result *res);

/* Stop accepting and close admin connections (graceful shutdown). */
void admin_stop(struct shard *sh);

/* Frees everything; after the ring is gone. */
void admin_free(struct shard *sh);

#endif
