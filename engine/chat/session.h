/*
 * Sessions and presence at the user's home: hello (replacement, max_devices,
 * the ok reply), loading a user's state at its first session, catch-up with
 * register-then-read, and closing.
 *
 * Register, then read: a session is attached to its user (so deliveries reach
 * it, and are held) before anything of its catch-up range is read; a user's
 * group conversations enter the online index before their last seqs are read.
 * The hello is answered once the user's state is loaded: a device told it is
 * online is in the index, and what was held meanwhile is pushed after the ok
 * (resume false) or merged with the catch-up (resume true).
 * Every entry made durable before a read is in that read; every one made
 * durable after it reaches the session as a delivery, held until `synced` has
 * gone out and then pushed unless its seq was already sent.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_SESSION_H
#define RP_CHAT_SESSION_H

#include "engine/chat/home.h"

struct chat;

void session_hello(struct chat *c, conn_id_t conn, struct strv user, struct strv device,
                   bool resume, uint32_t hello_id);

/* The connection is gone: detach its session (no-op for an unknown conn). */
void session_close(struct chat *c, conn_id_t conn);

/* Close every session of user with `bye reason`; returns how many. */
uint32_t session_kick_user(struct chat *c, struct strv user, const char *reason);

/* A query of s (history, group.list) starts: takes a reference, and at
 * HOME_QUERIES_MAX in flight holds the connection's further frames. */
void session_query_start(struct chat *c, struct session *s);
/* ... and has ended (its reply is out): releases the connection when it was
 * held, then drops the reference (s may be gone after the call). */
void session_query_end(struct chat *c, struct session *s);

/* Hold a live push for a session that is not live yet; closes it `slow` past
 * HOME_HELD_MAX. An empty conv holds a push that is not an entry (read,
 * friend): it goes out as it is, in its place, when the session goes live.
 * 0, -RP_EFULL or -ENOMEM. */
int session_hold(struct chat *c, struct session *s, struct strv conv, uint64_t seq,
                 struct rbuf *frame);

/* Free everything at shutdown. */
void session_free_all(struct chat *c);

/*
 * Load user id for the friend sweep (friend.h) unless it is here already:
 * 1 when a load started or one under way for a login is joined
 * (friend_sweep_loaded is called once it has ended and the user is let go
 * again, unless a session holds it), 0 when the user is loaded (or its load
 * is the sweep's already), <0 when no load could start.
 */
int session_load_user(struct chat *c, struct strv id);

/* The connection's outbound queue drained: resume a paused catch-up. */
void session_on_drained(struct chat *c, conn_id_t conn);

#endif
