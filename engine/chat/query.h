/*
 * The read-only requests a home answers from its own state and the log:
 * sync (from the user's conversation list and this device's acks), history
 * (a bounded log scan; members only, a group member from the seq it joined
 * at) and group.list (the user's stored conversation list plus each group's
 * name). Every reply fits in max_frame: a history page is shortened and
 * `more` set; sync and group.list keep the newest conversations that fit.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_QUERY_H
#define RP_CHAT_QUERY_H

#include "engine/chat/home.h"

struct chat;

void query_sync(struct chat *c, struct session *s, const struct req *r);
void query_history(struct chat *c, struct session *s, const struct req *r);
void query_group_list(struct chat *c, struct session *s, const struct req *r);

#endif
