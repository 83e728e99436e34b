/*
 * Friends (PROTOCOL §6) at the users' homes. Each side of a friendship is
 * stored and owned by that user's home (friend: user|peer). A request,
 * accept or remove changes the caller's side here, and the peer's side at the
 * peer's home through an XK_FRIEND message; both sides push to their user's
 * devices. The caller's `ok` follows its own side's durable write.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_FRIEND_H
#define RP_CHAT_FRIEND_H

#include "engine/chat/home.h"

struct chat;

void friend_on_request(struct chat *c, struct session *s, const struct req *r);

/* The peer's side of a friend op (f->user is the caller, f->req.user the peer). */
void friend_on_peer(struct chat *c, struct fwd *f);

#endif
