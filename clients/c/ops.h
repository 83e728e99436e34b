/*
 * Request helpers, one per op of PROTOCOL §5-6: each builds the op's fields
 * and calls rp_call. Optional string arguments may be NULL (the field is then
 * left out). On 0, *reply holds the reply, to be checked with rp_msg_code and
 * freed with rp_msg_free; errors are those of rp_call, and -RP_EREQUEST for
 * arguments that cannot form a valid request.
 *
 * Thread: as struct rp_client.
 */
#ifndef RP_CLIENTS_OPS_H
#define RP_CLIENTS_OPS_H

#include "ringpush.h"

/* Exactly one of to / group (else -RP_EREQUEST). body_bin: send body as bin, else str. */
int rp_send(struct rp_client *c, const char *to, const char *group, const char *cmid,
            const char *type, const void *body, size_t body_len, bool body_bin,
            struct rp_msg **reply);
/* No reply is sent for an ack; 0 or rp_client_send's errors. */
int rp_ack(struct rp_client *c, const char *conv, uint64_t seq);
int rp_read(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply);
int rp_recall(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply);
int rp_sync(struct rp_client *c, struct rp_msg **reply);
/* before / after / limit: 0 leaves the field out (the server's default). */
int rp_history(struct rp_client *c, const char *conv, uint64_t before, uint64_t after,
               uint32_t limit, struct rp_msg **reply);

int rp_group_create(struct rp_client *c, const char *name, const char *group,
                    const char *const *members, size_t n, struct rp_msg **reply);
int rp_group_invite(struct rp_client *c, const char *group, const char *const *users, size_t n,
                    struct rp_msg **reply);
int rp_group_kick(struct rp_client *c, const char *group, const char *const *users, size_t n,
                  struct rp_msg **reply);
/* op: "join", "leave", "dismiss", "info" or "list" (group NULL for list). */
int rp_group_simple(struct rp_client *c, const char *op, const char *group, struct rp_msg **reply);
/* open: -1 leaves it unchanged, 0 / 1 sets it. */
int rp_group_update(struct rp_client *c, const char *group, const char *name, const char *notice,
                    int open, struct rp_msg **reply);
int rp_group_admin(struct rp_client *c, const char *group, const char *user, bool admin,
                   struct rp_msg **reply);
int rp_group_nick(struct rp_client *c, const char *group, const char *nick, struct rp_msg **reply);
int rp_group_remark(struct rp_client *c, const char *group, const char *remark,
                    struct rp_msg **reply);
int rp_group_members(struct rp_client *c, const char *group, const char *after, uint32_t limit,
                     struct rp_msg **reply);

/* op: "request" (note may be NULL), "accept", "remove" (user), or "list" (user NULL). */
int rp_friend(struct rp_client *c, const char *op, const char *user, const char *note,
              struct rp_msg **reply);

#endif
