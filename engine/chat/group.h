/*
 * Group operations at the group conversation's owner (PROTOCOL §6): the
 * permission rules, the membership and metadata changes, and the `event`
 * entries that record them. Each op that changes the group is staged as a
 * barrier (owner.h): its change (struct ochange) is written with its event
 * entry and applied to the owner's memory only once durable.
 *
 * Thread: the shard's thread.
 */
#ifndef RP_CHAT_GROUP_H
#define RP_CHAT_GROUP_H

#include "engine/chat/owner.h"

#include <stdbool.h>
#include <stdint.h>

struct chat;

struct ochange_member {
    struct strv user; /* view into the request (struct fwd) or the conv's map */
    uint8_t role;
    struct strv nick;
    bool set_nick;
    struct strv remark;
    bool set_remark;
    bool set_role;
    uint64_t joined_seq; /* for adds: the event's seq, filled in when staged */
};

/* A change to a group, owned by the staged record, applied when durable. */
struct ochange {
    bool create, dismiss;
    bool set_name, set_notice, set_open;
    struct strv name, notice, owner;
    bool open;
    uint32_t nadds, ndels, nupds;
    struct ochange_member *adds; /* new members */
    struct strv *dels;           /* removed members */
    struct ochange_member *upds; /* role / nick / remark of existing members */
    char *arena;                 /* copies of the removed users' ids */
};

void ochange_free(struct ochange *chg);

/* Apply a durable change to the conversation's memory state. 0 or -ENOMEM. */
int group_apply(struct chat *c, struct oconv *cv, const struct ochange *chg);

/*
 * Validate and stage one group request f (op OP_GROUP_*) for cv. Returns
 * 1 when a barrier record was staged (f now belongs to it), 0 when f was
 * answered at once (f freed).
 */
int group_stage(struct chat *c, struct oconv *cv, struct fwd *f);

/* True for the group ops that never change anything (info, members). */
bool group_op_readonly(int op);

#endif
