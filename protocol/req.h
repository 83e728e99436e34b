/*
 * Decoding and validation of one client request (PROTOCOL §2-6). A request is
 * a msgpack map with string keys; this module checks that it is exactly one
 * well-formed map (mpscan), finds the op, and checks every field the op
 * requires or allows, so that the chat logic only sees valid requests.
 *
 * Decisions where the protocol page is silent:
 * - Integers are msgpack positive fixint or uint8..64; a negative integer, a
 *   float or any other type where an integer is expected is bad_request.
 *   `id` must fit in 32 bits.
 * - A key that appears twice: the last one wins.
 * - Free-text fields have fixed limits: name 128, notice 4096, nick 64,
 *   remark 256, note 256 bytes (longer: bad_request).
 * - `history.limit` is 1..REQ_HISTORY_LIMIT_MAX; `group.members.limit` is
 *   1..REQ_MEMBERS_LIMIT_MAX and its `after` is a user id (exclusive cursor).
 * - `sync` takes an optional `after`: the `next` cursor of the page before
 *   (a str of at most REQ_SYNC_CURSOR_MAX bytes, checked by the chat layer).
 *   `group.list`'s `after` is a group id (exclusive cursor, the list being in
 *   group id order).
 * - A direct conversation id must be "d:<a>:<b>" with a <= b.
 * - A group.create `members` list may be empty; the caller is always added.
 *
 * Thread: a req_decoder is per thread (or per connection); decoding is pure.
 */
#ifndef RP_PROTOCOL_REQ_H
#define RP_PROTOCOL_REQ_H

#include "protocol/strv.h"

#include <stdbool.h>
#include <stdint.h>

enum op {
    OP_HELLO,
    OP_PING,
    OP_SEND,
    OP_ACK,
    OP_READ,
    OP_RECALL,
    OP_SYNC,
    OP_HISTORY,
    OP_GROUP_CREATE,
    OP_GROUP_INVITE,
    OP_GROUP_JOIN,
    OP_GROUP_KICK,
    OP_GROUP_LEAVE,
    OP_GROUP_DISMISS,
    OP_GROUP_UPDATE,
    OP_GROUP_ADMIN,
    OP_GROUP_NICK,
    OP_GROUP_REMARK,
    OP_GROUP_INFO,
    OP_GROUP_MEMBERS,
    OP_GROUP_LIST,
    OP_FRIEND_REQUEST,
    OP_FRIEND_ACCEPT,
    OP_FRIEND_REMOVE,
    OP_FRIEND_LIST,
    OP__COUNT
};

/* The wire name of an op ("hello", "group.create", ...); "?" when out of range. */
const char *op_name(enum op op);

/* The op whose wire name is s; -1 when there is none. */
int op_from_name(struct strv s);

#define REQ_HISTORY_LIMIT_MAX 200u
#define REQ_MEMBERS_LIMIT_MAX 500u
#define REQ_NAME_MAX          128u
#define REQ_NOTICE_MAX        4096u
#define REQ_NICK_MAX          64u
#define REQ_REMARK_MAX        256u
#define REQ_NOTE_MAX          256u
#define REQ_CMID_MAX          64u
#define REQ_TYPE_MAX          16u
#define REQ_SYNC_CURSOR_MAX   160u

/*
 * A decoded request. Views point into the frame (and into the decoder for the
 * users array). Fields an op does not use are zero / empty.
 */
struct req {
    enum op op;
    bool has_id;
    uint32_t id;
    struct strv token, device, to, group, cmid, type, conv, name, notice, user, nick, remark, note;
    struct strv body;
    bool body_bin;          /* body came as msgpack bin (else str): keep it that way */
    bool resume;            /* hello; default true */
    uint64_t seq;           /* ack, read, recall */
    uint64_t before, after; /* history */
    bool has_before, has_after;
    struct strv after_user; /* group.members / group.list / sync cursor (has_after is set too) */
    uint32_t limit;
    bool has_limit;
    bool open, has_open, admin, has_admin, has_name, has_notice, has_group, has_members;
    bool has_note;
    struct strv *users; /* `users` (invite/kick) or `members` (create) */
    uint32_t nusers;
};

struct req_limits {
    uint32_t max_body;  /* PROTOCOL default 32768 */
    uint32_t max_users; /* PROTOCOL: 500 */
};

/* Reusable decoding state: the storage behind req.users. */
struct req_decoder {
    struct strv *users;
    uint32_t cap;
};

/* 0 (allocates nothing yet). */
int req_decoder_init(struct req_decoder *d);
void req_decoder_deinit(struct req_decoder *d);

/*
 * Decodes and validates frame[0..len), a frame payload without its prefix.
 * Runs mpscan_map first, then decodes. Views in *out point into `frame` (and
 * into decoder storage for the users array) and are valid until the next
 * req_decode on this decoder or until the frame bytes go.
 *
 * Returns 0; -RP_EFRAME (not exactly one map, or a key that is not a string: fatal); -RP_EREQUEST
 * (missing or mistyped field, bad id charset/length, unknown op, reserved type `event`, `recall` or
 * `recalled`, both or neither of to/group, ...) with *errmsg set to a short static text;
 * -RP_ETOOLARGE (body > max_body, more than max_users ids) with *errmsg set; -ENOMEM (users
 * storage). On -RP_EREQUEST and -RP_ETOOLARGE, out->has_id/out->id/out->op are filled when they
 * could be read, so the error reply can echo the id (out->op is OP__COUNT when unknown). errmsg may
 * be NULL.
 */
int req_decode(struct req_decoder *d, const struct req_limits *lim, const uint8_t *frame,
               uint32_t len, struct req *out, const char **errmsg);

#endif
