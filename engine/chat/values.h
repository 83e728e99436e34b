/*
 * The stored forms of the chat layer's records (storage/key.h names the keys):
 * small msgpack maps with one-letter keys, so that fields can be added later
 * and unknown ones skipped. Log entries are not here: their stored form is the
 * `msg` push map (protocol/enc.h enc_entry).
 *
 *   conv      {"k":kind,"s":last_seq,"t":last_ts} plus, for a group,
 *             {"n":name,"c":notice,"o":owner,"p":open,"d":dismissed,"m":members}
 *   member    conv|user -> {"r":role,"j":joined_seq,"n":nick,"m":remark}
 *   userconv  user|conv -> {"k":kind,"r":role,"j":joined_seq}
 *   left      user|conv -> left_ts (8 bytes, big-endian) {"k","r","j","l":left_seq}:
 *             the user was removed by the event at left_seq, at left_ts; kept
 *             (STG_LEFT_KEEP_MS) so that devices offline then still get it
 *   cursor    user|device|conv -> be64 seq (device "*" holds the read cursor)
 *   dedup     conv|user|cmid -> be64 ts, be64 seq
 *   friend    user|peer -> {"s":state,"t":ts,"n":note}
 *
 * Encoders replace nothing: they append to b and return 0 or -ENOMEM.
 * Decoders return 0 or -RP_EFRAME; string fields are views into the input.
 * Thread: pure functions, any thread.
 */
#ifndef RP_CHAT_VALUES_H
#define RP_CHAT_VALUES_H

#include "base/buf.h"
#include "protocol/strv.h"

#include <stdbool.h>
#include <stdint.h>

/* The device name under which a user's read cursor is stored: not a valid device id. */
#define VAL_READ_DEVICE "*"

enum role { ROLE_MEMBER = 0, ROLE_ADMIN = 1, ROLE_OWNER = 2 };

const char *role_name(int role);

struct conv_meta {
    uint8_t kind; /* enum conv_kind */
    uint64_t last_seq, last_ts;
    struct strv name, notice, owner;
    bool open, dismissed;
    uint32_t members;
};

struct member_rec {
    uint8_t role;
    uint64_t joined_seq;
    struct strv nick, remark;
};

struct userconv_rec {
    uint8_t kind;
    uint8_t role;
    uint64_t joined_seq;
    uint64_t left_seq; /* 0: a member; else the seq of the event that removed the user */
    uint64_t left_ts;
};

enum friend_state { FRIEND_NONE = 0, FRIEND_YES = 1, FRIEND_ASKED = 2, FRIEND_ASKING = 3 };

/* FRIEND_ASKED: this user sent a request to peer; FRIEND_ASKING: peer sent one to this user. */
struct friend_rec {
    uint8_t state;
    uint64_t ts;
    struct strv note;
    uint64_t run; /* a pending side: the run that wrote it (0: none) */
};

int val_conv_encode(struct buf *b, const struct conv_meta *m);
int val_conv_decode(const uint8_t *p, uint32_t n, struct conv_meta *m);

int val_member_encode(struct buf *b, const struct member_rec *m);
int val_member_decode(const uint8_t *p, uint32_t n, struct member_rec *m);

int val_userconv_encode(struct buf *b, const struct userconv_rec *u);
int val_userconv_decode(const uint8_t *p, uint32_t n, struct userconv_rec *u);
/* A removal record (STG_CF_LEFT): left_ts as 8 bytes big-endian (what the
 * family's expiry reads), then the userconv map with left_seq. */
int val_left_encode(struct buf *b, const struct userconv_rec *u);
int val_left_decode(const uint8_t *p, uint32_t n, struct userconv_rec *u);

int val_friend_encode(struct buf *b, const struct friend_rec *f);
int val_friend_decode(const uint8_t *p, uint32_t n, struct friend_rec *f);

int val_dedup_encode(struct buf *b, uint64_t ts, uint64_t seq);
int val_dedup_decode(const uint8_t *p, uint32_t n, uint64_t *ts, uint64_t *seq);

int val_u64_encode(struct buf *b, uint64_t v);
int val_u64_decode(const uint8_t *p, uint32_t n, uint64_t *v);

#endif
