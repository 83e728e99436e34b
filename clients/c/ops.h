/*
 * Request helpers, one per op of PROTOCOL §5-6: each builds the op's fields
 * and calls rp_call, so each blocks up to the client's timeout (rp_ack
 * excepted). Optional string arguments may be NULL (the field is then left
 * out). Every argument is borrowed for the call.
 *
 * On 0, *reply holds the reply: an ok carrying the op's result fields (named
 * below), or an error reply with the server's code (rp_msg_code) — a refusal
 * by the server is not a negative return. The caller frees *reply with
 * rp_msg_free. Negative returns are those of rp_call (-ETIMEDOUT,
 * -RP_ECLOSED, -RP_ETOOLARGE, -ENOMEM, -errno), and -RP_EREQUEST for
 * arguments that cannot form a valid request (then nothing was sent).
 *
 * For a poll loop, build the same fields and use rp_client_send instead.
 *
 * Thread: as struct rp_client.
 */
#ifndef RP_CLIENTS_OPS_H
#define RP_CLIENTS_OPS_H

#include "ringpush.h"

/*
 * send: exactly one of to / group (else -RP_EREQUEST); cmid and type are
 * required. body_bin: the body goes as msgpack bin, else as str. Reply:
 * conv, seq, ts (and dup: true for a cmid already accepted).
 */
int rp_send(struct rp_client *c, const char *to, const char *group, const char *cmid,
            const char *type, const void *body, size_t body_len, bool body_bin,
            struct rp_msg **reply);
/*
 * ack: moves this device's cursor in conv to seq. No reply is sent for an
 * ack, so this never blocks: it queues the frame (0 or rp_client_send's
 * errors); flush it before freeing the client.
 */
int rp_ack(struct rp_client *c, const char *conv, uint64_t seq);
/* read: the user's read cursor in conv; the peer gets a read push. Reply: ok. */
int rp_read(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply);
/* recall: takes back entry seq of conv. Reply: seq (of the recall entry); expired, forbidden. */
int rp_recall(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply);
/*
 * sync: one page of the user's conversations, newest first. after is NULL for
 * the first page, else the previous reply's "next". Reply: convs, an array of
 * {conv, last_seq, last_ts, read_seq, ack_seq, unread}; more, and next when more.
 */
int rp_sync(struct rp_client *c, const char *after, struct rp_msg **reply);
/*
 * history: before / after / limit of 0 leave the field out (the server's
 * default: the newest 50). Reply: conv, msgs (ascending seq), more.
 */
int rp_history(struct rp_client *c, const char *conv, uint64_t before, uint64_t after,
               uint32_t limit, struct rp_msg **reply);

/* group.create: group NULL lets the server pick the id; members NULL for none. Reply: group,
 * conv. */
int rp_group_create(struct rp_client *c, const char *name, const char *group,
                    const char *const *members, size_t n, struct rp_msg **reply);
/* group.invite / group.kick: n users (at most 500, else the server's too_large). Reply: ok. */
int rp_group_invite(struct rp_client *c, const char *group, const char *const *users, size_t n,
                    struct rp_msg **reply);
int rp_group_kick(struct rp_client *c, const char *group, const char *const *users, size_t n,
                  struct rp_msg **reply);
/*
 * op: "join", "leave", "dismiss", "info" or "list" (group NULL for list and
 * only for it, else -RP_EREQUEST). Reply: info gives group, name, notice,
 * owner, open, count, last_seq, remark; list gives groups; the others ok.
 */
int rp_group_simple(struct rp_client *c, const char *op, const char *group, struct rp_msg **reply);
/* group.list: one page of the user's groups in id order, after the group id after (NULL: from
 * the first). Reply: groups, more. */
int rp_group_list(struct rp_client *c, const char *after, struct rp_msg **reply);
/* group.update: NULL name / notice and open -1 leave them unchanged; 0 / 1 sets open. */
int rp_group_update(struct rp_client *c, const char *group, const char *name, const char *notice,
                    int open, struct rp_msg **reply);
/* group.admin (owner only), group.nick (one's nickname), group.remark (a private note). */
int rp_group_admin(struct rp_client *c, const char *group, const char *user, bool admin,
                   struct rp_msg **reply);
int rp_group_nick(struct rp_client *c, const char *group, const char *nick, struct rp_msg **reply);
int rp_group_remark(struct rp_client *c, const char *group, const char *remark,
                    struct rp_msg **reply);
/* group.members: after (a user id) and limit page the list. Reply: members, more. */
int rp_group_members(struct rp_client *c, const char *group, const char *after, uint32_t limit,
                     struct rp_msg **reply);

/*
 * op: "request" (note may be NULL), "accept", "remove" (user), or "list"
 * (user NULL); anything else, a user for list or none for the others, or a
 * note with an op other than request is -RP_EREQUEST. Reply: list gives
 * friends and requests; the others ok.
 */
/* friend.list: one page of friends and requests received, in user id order, after the user id
 * after (NULL: from the first). Reply: friends, requests, more, and next when more. */
int rp_friend_list(struct rp_client *c, const char *after, struct rp_msg **reply);
int rp_friend(struct rp_client *c, const char *op, const char *user, const char *note,
              struct rp_msg **reply);

#endif
