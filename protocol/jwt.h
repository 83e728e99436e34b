/*
 * JSON Web Tokens signed with HMAC-SHA256 (RFC 7519, JWS compact form): the
 * only token the hello op accepts (PROTOCOL §4). Claims used: `sub` (the user
 * id), `exp` and, when present, `nbf` (seconds since the epoch). Any other
 * `alg`, `none` included, is refused; the signature is compared in constant
 * time.
 *
 * Thread: pure functions, any thread.
 */
#ifndef RP_PROTOCOL_JWT_H
#define RP_PROTOCOL_JWT_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define JWT_SUB_MAX 64
/* Longer tokens are refused unread. */
#define JWT_TOKEN_MAX 4096
/*
 * Seconds by which an nbf may lie ahead of now and still be honoured: the
 * backend that mints a token often sets nbf to its own current second, and a
 * clock a little ahead of ours would otherwise get fresh tokens refused. exp
 * gets no leeway: a clock skew there only shortens or lengthens a lifetime.
 */
#define JWT_NBF_LEEWAY 5

struct jwt_claims {
    char sub[JWT_SUB_MAX + 1]; /* NUL-terminated copy */
    uint32_t sub_len;
    uint64_t exp; /* whole seconds, rounded down */
};

/*
 * Verifies token[0..len) with key[0..keylen) at time now_s (seconds).
 * Returns 0 and fills *out, or:
 *   -RP_EAUTH     malformed; alg other than HS256, "none" included; a bad
 *                 signature; sub not a valid user id; sub or exp missing, or
 *                 sub, exp or nbf mistyped (exp and nbf: a number of seconds
 *                 in [0, 2^53], a fraction allowed); nbf, rounded up, later
 *                 than now_s + JWT_NBF_LEEWAY; a string in the header or the
 *                 claims holding U+0000, raw or as \u0000; either JSON part
 *                 followed by anything but whitespace, or holding a control
 *                 byte JSON does not allow; alg, sub, exp or nbf appearing
 *                 more than once
 *   -RP_EEXPIRED  a valid token whose exp, rounded down, is <= now_s
 *   -ENOMEM
 * The header and claims JSON are parsed with cJSON, only after the signature
 * has verified. out is written only on success.
 */
int jwt_verify_hs256(const char *token, size_t len, const uint8_t *key, size_t keylen,
                     uint64_t now_s, struct jwt_claims *out);

/*
 * Appends a signed token (header {"alg":"HS256","typ":"JWT"}, claims sub and
 * exp; no NUL) to out. 0, -EINVAL (sub longer than JWT_SUB_MAX) or -ENOMEM.
 */
int jwt_sign_hs256(const char *sub, size_t sublen, uint64_t exp, const uint8_t *key, size_t keylen,
                   struct buf *out);

#endif
