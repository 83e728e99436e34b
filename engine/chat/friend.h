/*
 * Friends (PROTOCOL §6) at the users' homes. Each side of a friendship is
 * stored and owned by that user's home (friend: user|peer). A request,
 * accept or remove writes the caller's side here; once that is durable the
 * caller gets `ok` and its push, and the op goes on to the peer's home
 * (XK_FRIEND), which writes the peer's side and, once that is durable, pushes
 * to the peer. A user's loaded friend state changes only with a durable
 * write. A failed write of the caller's side is answered with the error; a
 * failed write of the peer's side is retried every second until it holds or
 * a newer op replaces it, so while the process runs the two sides meet again.
 * Across a crash or a stop they meet through a pending record: the batch of
 * the caller's side also records the peer's side under the peer (key
 * 0|peer|caller|ts), the batch of the peer's side (or of a newer row that
 * replaces it) removes it, and loading the peer reads the records left and
 * writes the newest side of each pair, if a past run wrote it and it is newer
 * than what was loaded. Peers who do not log in are loaded for that by a
 * sweep of the records once after a start (friend.c).
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_FRIEND_H
#define RP_CHAT_FRIEND_H

#include "engine/chat/home.h"

struct chat;

void friend_on_request(struct chat *c, struct session *s, const struct req *r);

/* The peer's side of a friend op (f->user is the caller, f->req.user the
 * peer; f transferred). */
void friend_on_peer(struct chat *c, struct fwd *f);

/* u is loaded: write the pending sides read with it (u->fpend; freed). */
void friend_replay(struct chat *c, struct user *u);

/* Once a second: write again the peer sides whose write failed, and go on
 * with the sweep of pending sides left by an earlier run (friend.c). */
void friend_tick(struct chat *c);

/* The load of a user for the sweep has ended (session.c), failed or not. */
void friend_sweep_loaded(struct chat *c, bool failed);

/* True while friend rows are in flight or wait to be written again. */
bool friend_pending(const struct chat *c);

/* Free what is waiting for a retry (the shard is going away). */
void friend_deinit(struct chat *c);

#endif
