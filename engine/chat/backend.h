/*
 * The backend (admin) API of the chat layer, PROTOCOL §7: the chat_admin_*
 * entry points of chat.h, routed between shards, and the answers that return
 * to the calling shard's env->admin_done.
 *
 * Routing: every call first goes to the home of the user it names (XK_ADMIN,
 * even when that is the calling shard, so that admin_done never runs inside a
 * chat_admin_* call). Presence and kick are answered there. A send is checked
 * there (dm_policy friends needs the user's friend list, read from storage
 * when the user has no session) and forwarded to the conversation's owner like
 * a client send, flagged as an admin request (struct fwd `admin`): the owner
 * answers through backend_reply_send / backend_reply_err instead of a frame,
 * and the sender's read cursor still moves at its home (sending implies
 * reading). Every answer travels back as XK_ADMIN_DONE.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_BACKEND_H
#define RP_CHAT_BACKEND_H

#include "engine/chat/xfer.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

enum admin_op { ADMIN_SEND = 1, ADMIN_PRESENCE, ADMIN_KICK };

/* An answer on its way to the calling shard; res's views point into data. */
struct admin_done {
    uint64_t tag;
    struct chat_admin_result res;
    char data[];
};

/* At the user's home: an admin call (f transferred; op is an enum admin_op). */
void backend_on_home(struct chat *c, struct fwd *f, uint64_t op);

/* At the calling shard: hand the answer to env->admin_done (d transferred). */
void backend_on_done(struct chat *c, struct admin_done *d);

/* Answer the admin request f (f->admin is set; f stays the caller's). */
void backend_reply_send(struct chat *c, const struct fwd *f, struct strv conv, uint64_t seq,
                        uint64_t ts, bool dup);
void backend_reply_err(struct chat *c, const struct fwd *f, int err, const char *msg);

#endif
