/*
 * HS256 JWT. Verification order matters: the token is split and its
 * signature checked (HMAC-SHA256, constant-time compare) before any JSON is
 * parsed, so unauthenticated input never reaches the JSON parser beyond the
 * base64 layer. Base64url is decoded strictly (no padding, no stray bits), so
 * a token has exactly one valid spelling. The JSON is read strictly too, so
 * that a token means to us what it meant to its signer, whose parser may not
 * be cJSON: one object and only whitespace after it, no control bytes, no
 * U+0000 (cJSON would cut the string there) and no second copy of a name we
 * read (parsers differ on which copy wins).
 */
#include "protocol/jwt.h"

#include "base/err.h"
#include "protocol/ident.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LEN 32

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes s[0..n) into out (room for n * 3 / 4 bytes); returns the length or -1. */
static long b64url_decode(const char *s, size_t n, uint8_t *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* leftover bits must be zero: one spelling per byte string */
    if (acc & ((1u << bits) - 1))
        return -1;
    return (long)o;
}

static int b64url_append(struct buf *b, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t k = n - i < 3 ? n - i : 3;
        if (k > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (k > 2)
            v |= p[i + 2];
        char q[4] = {b64url[v >> 18], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63],
                     b64url[v & 63]};
        buf_append(b, q, k + 1);
    }
    return buf_failed(b) ? -ENOMEM : 0;
}

static bool hmac256(const uint8_t *key, size_t keylen, const void *msg, size_t n,
                    uint8_t out[SIG_LEN])
{
    unsigned int outlen = 0;
    /* HMAC() takes an int key length */
    if (keylen > INT32_MAX)
        return false;
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, n, out, &outlen))
        return false;
    return outlen == SIG_LEN;
}

static bool json_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * Is this JSON text one that cJSON reads as a strict parser would, as far as
 * bytes tell? Refused: a control byte other than JSON's four whitespace
 * characters (JSON allows none, and cJSON would skip one as whitespace), and
 * U+0000, raw or as a \u0000 escape: cJSON keeps strings NUL-terminated, so
 * "alice\u0000mallory" would come out as "alice" while another parser (the
 * signer's) sees the whole string. An escape can only start at a backslash
 * that is not itself escaped, so the scan steps over escaped backslashes:
 * "\\u0000" is a backslash, then text.
 */
static bool text_ok(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 && !json_space(p[i]))
            return false;
        if (p[i] != '\\' || i + 1 == len)
            continue;
        if (p[i + 1] == 'u' && i + 5 < len && memcmp(p + i + 2, "0000", 4) == 0)
            return false;
        if (p[i + 1] == '\\')
            i++; /* an escaped backslash starts no escape */
    }
    return true;
}

/*
 * Base64url-decodes and parses one JSON object segment; NULL if it is not
 * exactly one, with nothing but whitespace after it. Text that text_ok()
 * refuses never reaches cJSON, so every string cJSON returns is whole and
 * strlen() gives its decoded length.
 */
static cJSON *parse_segment(const char *s, size_t n, int *err)
{
    uint8_t *raw = malloc(n * 3 / 4 + 1);
    cJSON *j = NULL;
    if (!raw) {
        *err = -ENOMEM;
        return NULL;
    }
    long m = b64url_decode(s, n, raw);
    if (m > 0 && text_ok(raw, (size_t)m)) {
        const char *end = NULL;
        j = cJSON_ParseWithLengthOpts((const char *)raw, (size_t)m, &end, false);
        while (j && end && end < (const char *)raw + m && json_space((uint8_t)*end))
            end++;
        if (j && end != (const char *)raw + m) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    free(raw);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    *err = -RP_EAUTH;
    return j;
}

/*
 * Sets *item to the member of object o called name (NULL when there is none);
 * false when the name appears more than once. RFC 7519 §4 and RFC 7515 §5.2
 * let a parser either refuse duplicates or take the last one; cJSON takes the
 * first, so a token whose signer read the last could mean two things.
 * Callers test *item for NULL themselves: cJSON_Is*() would say false, but
 * the static analyzer cannot see that inside the library.
 */
static bool member_once(const cJSON *o, const char *name, const cJSON **item)
{
    const cJSON *found = NULL;
    for (const cJSON *m = o->child; m; m = m->next) {
        if (strcmp(m->string, name) != 0)
            continue;
        if (found)
            return false;
        found = m;
    }
    *item = found;
    return true;
}

/* The largest NumericDate taken: 2^53 s, up to which a double holds every whole second. */
#define DATE_MAX 9007199254740992.0

/*
 * A NumericDate (RFC 7519 §2): a JSON number of seconds since the epoch, a
 * fraction allowed. false for anything else, a negative number or one past
 * DATE_MAX; the range test is also false for NaN and the infinities (cJSON
 * gives HUGE_VAL for 1e999), and it makes a cast of *v to uint64_t defined.
 */
static bool numeric_date(const cJSON *e, double *v)
{
    if (!e || !cJSON_IsNumber(e))
        return false;
    *v = e->valuedouble;
    return *v >= 0 && *v <= DATE_MAX;
}

int jwt_verify_hs256(const char *token, size_t len, const uint8_t *key, size_t keylen,
                     uint64_t now_s, struct jwt_claims *out)
{
    cJSON *hdr = NULL, *claims = NULL;
    uint8_t sig[SIG_LEN + 3], mac[SIG_LEN];
    int err = -RP_EAUTH;

    if (!token || len == 0 || len > JWT_TOKEN_MAX)
        return -RP_EAUTH;
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return -RP_EAUTH;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return -RP_EAUTH;
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen != 43) /* 43 = unpadded base64 of 32 bytes */
        return -RP_EAUTH;
    if (b64url_decode(d2 + 1, slen, sig) != SIG_LEN)
        return -RP_EAUTH;
    if (!hmac256(key, keylen, token, (size_t)(d2 - token), mac))
        return -RP_EAUTH;
    if (CRYPTO_memcmp(sig, mac, SIG_LEN) != 0)
        return -RP_EAUTH;

    if (!(hdr = parse_segment(token, hlen, &err)))
        goto out;
    err = -RP_EAUTH;
    const cJSON *alg, *sub, *exp, *nbf;
    if (!member_once(hdr, "alg", &alg) || !alg || !cJSON_IsString(alg) ||
        strcmp(alg->valuestring, "HS256") != 0)
        goto out;
    /* RFC 7515 §4.1.11: extensions we do not understand must be refused */
    if (cJSON_GetObjectItemCaseSensitive(hdr, "crit"))
        goto out;

    if (!(claims = parse_segment(d1 + 1, plen, &err)))
        goto out;
    err = -RP_EAUTH;
    double expd, nbfd = 0;
    if (!member_once(claims, "sub", &sub) || !member_once(claims, "exp", &exp) ||
        !member_once(claims, "nbf", &nbf) || !sub || !cJSON_IsString(sub) ||
        !numeric_date(exp, &expd) || (nbf && !numeric_date(nbf, &nbfd)))
        goto out;
    /* whole seconds, rounded down: an exp within the current second has passed */
    uint64_t expv = (uint64_t)expd;
    /* and nbf rounded up: a token that is early for part of a second is early */
    uint64_t nbfv = (uint64_t)nbfd;
    if ((double)nbfv < nbfd)
        nbfv++;
    /* the decoded length: text_ok() let no U+0000 through */
    size_t sublen = strlen(sub->valuestring);
    if (sublen > JWT_SUB_MAX || !ident_user_ok((struct strv){sub->valuestring, (uint32_t)sublen}))
        goto out;
    if (expv <= now_s) {
        err = -RP_EEXPIRED;
        goto out;
    }
    if (nbfv > now_s && nbfv - now_s > JWT_NBF_LEEWAY)
        goto out;
    memcpy(out->sub, sub->valuestring, sublen + 1);
    out->sub_len = (uint32_t)sublen;
    out->exp = expv;
    err = 0;
out:
    cJSON_Delete(claims);
    cJSON_Delete(hdr);
    return err;
}

int jwt_sign_hs256(const char *sub, size_t sublen, uint64_t exp, const uint8_t *key, size_t keylen,
                   struct buf *out)
{
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char claims[JWT_SUB_MAX * 6 + 64];
    size_t n = 0;
    uint8_t mac[SIG_LEN];

    if (sublen > JWT_SUB_MAX)
        return -EINVAL;
    n += (size_t)snprintf(claims, sizeof(claims), "{\"sub\":\"");
    for (size_t i = 0; i < sublen; i++) {
        unsigned char c = (unsigned char)sub[i];
        if (c == '"' || c == '\\')
            n += (size_t)snprintf(claims + n, sizeof(claims) - n, "\\%c", c);
        else if (c < 0x20)
            n += (size_t)snprintf(claims + n, sizeof(claims) - n, "\\u%04x", c);
        else
            claims[n++] = (char)c;
    }
    n += (size_t)snprintf(claims + n, sizeof(claims) - n, "\",\"exp\":%" PRIu64 "}", exp);

    size_t start = out->len;
    b64url_append(out, (const uint8_t *)hdr, sizeof(hdr) - 1);
    buf_append(out, ".", 1);
    b64url_append(out, (const uint8_t *)claims, n);
    if (buf_failed(out))
        return -ENOMEM;
    if (!hmac256(key, keylen, out->data + start, out->len - start, mac))
        return -EINVAL;
    buf_append(out, ".", 1);
    return b64url_append(out, mac, SIG_LEN);
}
