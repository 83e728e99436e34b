/*
 * Identifiers of the wire protocol (PROTOCOL §2): user, group and device ids,
 * and conversation ids. A direct conversation between users a and b is
 * "d:<min>:<max>" (byte-wise order), a group's is "g:<group id>". Since ':' is
 * not an id character, a conversation id parses unambiguously.
 *
 * Thread: pure functions, any thread.
 */
#ifndef RP_PROTOCOL_IDENT_H
#define RP_PROTOCOL_IDENT_H

#include "protocol/strv.h"

#include <stdbool.h>
#include <stdint.h>

#define IDENT_USER_MAX   64u /* also group ids */
#define IDENT_DEVICE_MAX 32u
/* Longest conversation id: "d:" + 64 + ":" + 64. */
#define IDENT_CONV_MAX (2u + IDENT_USER_MAX + 1u + IDENT_USER_MAX)

enum conv_kind { CONV_BAD = 0, CONV_DIRECT, CONV_GROUP };

/* 1..64 bytes of [A-Za-z0-9_.@-]: a user id or a group id. */
bool ident_user_ok(struct strv id);
/* 1..32 bytes of the same set. */
bool ident_device_ok(struct strv id);

/*
 * Classifies a conversation id. CONV_DIRECT: "d:<a>:<b>" with a and b valid
 * user ids and a <= b byte-wise; sets *a and *b (views into conv). CONV_GROUP:
 * "g:<gid>" with a valid group id; sets *a to the gid and *b to an empty view.
 * CONV_BAD otherwise (a and b untouched). a and b may be NULL.
 */
enum conv_kind ident_conv_parse(struct strv conv, struct strv *a, struct strv *b);

/*
 * Writes the direct conversation id of users x and y (any order) into out,
 * which must hold IDENT_CONV_MAX bytes; returns its length (no NUL written).
 * The ids are not checked: pass valid ones.
 */
uint32_t ident_conv_direct(char *out, struct strv x, struct strv y);

/* Writes "g:<gid>" into out (IDENT_CONV_MAX bytes); returns its length. */
uint32_t ident_conv_group(char *out, struct strv gid);

#endif
