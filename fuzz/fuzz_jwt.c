/*
 * Fuzz target for jwt_verify_hs256. Byte 0 picks the mode: even, the rest is
 * a token verified as is (the signature check must hold); odd, the rest is
 * the signing input "header.claims" and the harness signs it with the key,
 * so that the JSON and claims checks behind the signature are reached.
 * Checked: no crash; a verified token has a valid sub and exp > now, and
 * signing those claims again yields a token that verifies to the same claims.
 */
#include "base/buf.h"
#include "base/err.h"
#include "protocol/ident.h"
#include "protocol/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t key[] = "fuzz-key";
#define KEYLEN (sizeof(key) - 1)
#define NOW    1700000000ull

static void b64url(struct buf *b, const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63], a[v & 63]};
        buf_append(b, q, n - i >= 3 ? 4 : n - i + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct buf tok;
    buf_init(&tok);
    buf_append(&tok, data + 1, size - 1);
    if (data[0] & 1) {
        uint8_t mac[32];
        unsigned ml = 0;
        if (!HMAC(EVP_sha256(), key, KEYLEN, tok.data ? tok.data : key, tok.len, mac, &ml))
            abort();
        buf_put_u8(&tok, '.');
        b64url(&tok, mac, ml);
    }
    char *copy = malloc(tok.len ? tok.len : 1);
    memcpy(copy, tok.data ? (const void *)tok.data : "", tok.len);

    struct jwt_claims c;
    int err = jwt_verify_hs256(copy, tok.len, key, KEYLEN, NOW, &c);
    if (err == 0) {
        if (c.sub_len != strlen(c.sub) || !ident_user_ok((struct strv){c.sub, c.sub_len}) ||
            c.exp <= NOW)
            abort();
        struct buf again;
        struct jwt_claims c2;
        buf_init(&again);
        if (jwt_sign_hs256(c.sub, c.sub_len, c.exp, key, KEYLEN, &again) ||
            jwt_verify_hs256((const char *)again.data, again.len, key, KEYLEN, NOW, &c2) ||
            strcmp(c.sub, c2.sub) != 0 || c.exp != c2.exp)
            abort();
        buf_deinit(&again);
    } else if (err != -RP_EAUTH && err != -RP_EEXPIRED) {
        abort();
    }
    free(copy);
    buf_deinit(&tok);
    return 0;
}
