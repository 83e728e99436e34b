/*
 * The op helpers: thin builders of each request's field list. They check
 * only what the field list itself needs (one of to/group, a known op name);
 * every protocol rule is the server's to enforce.
 */
#include "ops.h"

#include "base/err.h"

#include <string.h>

/* Appends a string field when s is not NULL. */
static size_t opt_str(struct rp_field *f, size_t n, const char *key, const char *s)
{
    if (s)
        f[n++] = RP_FSTR(key, s);
    return n;
}

int rp_send(struct rp_client *c, const char *to, const char *group, const char *cmid,
            const char *type, const void *body, size_t body_len, bool body_bin,
            struct rp_msg **reply)
{
    if (!to == !group || !cmid || !type)
        return -RP_EREQUEST;
    struct rp_field f[] = {
        to ? RP_FSTR("to", to) : RP_FSTR("group", group),
        RP_FSTR("cmid", cmid),
        RP_FSTR("type", type),
        body_bin ? RP_FBIN("body", body, body_len)
                 : (struct rp_field){.key = "body", .type = RP_F_STR, .str = body, .len = body_len},
    };
    return rp_call(c, "send", f, 4, reply);
}

int rp_ack(struct rp_client *c, const char *conv, uint64_t seq)
{
    struct rp_field f[] = {RP_FSTR("conv", conv), RP_FUINT("seq", seq)};
    return rp_client_send(c, "ack", f, 2, NULL);
}

int rp_read(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("conv", conv), RP_FUINT("seq", seq)};
    return rp_call(c, "read", f, 2, reply);
}

int rp_recall(struct rp_client *c, const char *conv, uint64_t seq, struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("conv", conv), RP_FUINT("seq", seq)};
    return rp_call(c, "recall", f, 2, reply);
}

int rp_sync(struct rp_client *c, const char *after, struct rp_msg **reply)
{
    struct rp_field f[1];
    size_t n = opt_str(f, 0, "after", after);
    return rp_call(c, "sync", f, n, reply);
}

int rp_history(struct rp_client *c, const char *conv, uint64_t before, uint64_t after,
               uint32_t limit, struct rp_msg **reply)
{
    struct rp_field f[4] = {RP_FSTR("conv", conv)};
    size_t n = 1;
    if (before)
        f[n++] = RP_FUINT("before", before);
    if (after)
        f[n++] = RP_FUINT("after", after);
    if (limit)
        f[n++] = RP_FUINT("limit", limit);
    return rp_call(c, "history", f, n, reply);
}

int rp_group_create(struct rp_client *c, const char *name, const char *group,
                    const char *const *members, size_t n, struct rp_msg **reply)
{
    struct rp_field f[3] = {RP_FSTR("name", name)};
    size_t k = opt_str(f, 1, "group", group);
    if (members)
        f[k++] = RP_FSTRS("members", members, n);
    return rp_call(c, "group.create", f, k, reply);
}

static int group_users(struct rp_client *c, const char *op, const char *group,
                       const char *const *users, size_t n, struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("group", group), RP_FSTRS("users", users, n)};
    return rp_call(c, op, f, 2, reply);
}

int rp_group_invite(struct rp_client *c, const char *group, const char *const *users, size_t n,
                    struct rp_msg **reply)
{
    return group_users(c, "group.invite", group, users, n, reply);
}

int rp_group_kick(struct rp_client *c, const char *group, const char *const *users, size_t n,
                  struct rp_msg **reply)
{
    return group_users(c, "group.kick", group, users, n, reply);
}

int rp_group_list(struct rp_client *c, const char *after, struct rp_msg **reply)
{
    struct rp_field f[1];
    size_t n = opt_str(f, 0, "after", after);
    return rp_call(c, "group.list", f, n, reply);
}

int rp_group_simple(struct rp_client *c, const char *op, const char *group, struct rp_msg **reply)
{
    static const char *const ops[] = {"join", "leave", "dismiss", "info", "list"};
    char name[16];
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(op, ops[i]) != 0)
            continue;
        if (!group != (i == 4))
            return -RP_EREQUEST;
        snprintf(name, sizeof(name), "group.%s", op);
        struct rp_field f[1];
        size_t n = opt_str(f, 0, "group", group);
        return rp_call(c, name, f, n, reply);
    }
    return -RP_EREQUEST;
}

int rp_group_update(struct rp_client *c, const char *group, const char *name, const char *notice,
                    int open, struct rp_msg **reply)
{
    struct rp_field f[4] = {RP_FSTR("group", group)};
    size_t n = opt_str(f, 1, "name", name);
    n = opt_str(f, n, "notice", notice);
    if (open >= 0)
        f[n++] = RP_FBOOL("open", open);
    return rp_call(c, "group.update", f, n, reply);
}

int rp_group_admin(struct rp_client *c, const char *group, const char *user, bool admin,
                   struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("group", group), RP_FSTR("user", user),
                           RP_FBOOL("admin", admin)};
    return rp_call(c, "group.admin", f, 3, reply);
}

int rp_group_nick(struct rp_client *c, const char *group, const char *nick, struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("group", group), RP_FSTR("nick", nick)};
    return rp_call(c, "group.nick", f, 2, reply);
}

int rp_group_remark(struct rp_client *c, const char *group, const char *remark,
                    struct rp_msg **reply)
{
    struct rp_field f[] = {RP_FSTR("group", group), RP_FSTR("remark", remark)};
    return rp_call(c, "group.remark", f, 2, reply);
}

int rp_group_members(struct rp_client *c, const char *group, const char *after, uint32_t limit,
                     struct rp_msg **reply)
{
    struct rp_field f[3] = {RP_FSTR("group", group)};
    size_t n = opt_str(f, 1, "after", after);
    if (limit)
        f[n++] = RP_FUINT("limit", limit);
    return rp_call(c, "group.members", f, n, reply);
}

int rp_friend_list(struct rp_client *c, const char *after, struct rp_msg **reply)
{
    struct rp_field f[1];
    size_t n = opt_str(f, 0, "after", after);
    return rp_call(c, "friend.list", f, n, reply);
}

int rp_friend(struct rp_client *c, const char *op, const char *user, const char *note,
              struct rp_msg **reply)
{
    char name[16];
    bool list = strcmp(op, "list") == 0;
    if (!list && strcmp(op, "request") && strcmp(op, "accept") && strcmp(op, "remove"))
        return -RP_EREQUEST;
    if (list == !!user || (note && strcmp(op, "request")))
        return -RP_EREQUEST;
    snprintf(name, sizeof(name), "friend.%s", op);
    struct rp_field f[2];
    size_t n = opt_str(f, 0, "user", user);
    n = opt_str(f, n, "note", note);
    return rp_call(c, name, f, n, reply);
}
