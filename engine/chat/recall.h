/*
 * Recall (PROTOCOL §5) at the conversation's owner.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_RECALL_H
#define RP_CHAT_RECALL_H

#include "engine/chat/owner.h"

struct chat;

/*
 * Stage the recall f (op OP_RECALL) of cv; f->extra_ptr holds the target
 * entry's read result (NULL: no such entry), f->extra a failed read's errno.
 * Returns 1 when staged (f now belongs to the record), or -ENOENT (nothing to
 * recall), -EPERM, -RP_EEXPIRED, -RP_ESTORAGE, -ENOMEM (f stays the caller's).
 */
int recall_stage(struct chat *c, struct oconv *cv, struct fwd *f);

#endif
