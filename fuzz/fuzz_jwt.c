/*
 * Fuzz target for jwt_verify_hs256. The low two bits of byte 0 pick the mode:
 *   x0  the rest is a token verified as is (the signature check must hold);
 *   01  the rest is the signing input "header.claims" and the harness signs
 *       it with the key, so that the JSON and claims checks behind the
 *       signature are reached;
 *   11  the rest is the header's JSON text, a 0xff byte, then the claims'
 *       JSON text: the harness base64url-encodes both and signs them, so that
 *       mutations work on the JSON itself (escapes, duplicate names, trailing
 *       data, numbers) rather than on its base64.
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
    if ((data[0] & 3) == 3) {
        const uint8_t *p = data + 1, *end = data + size;
        const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));
        if (!sep)
            sep = end;
        b64url(&tok, p, (size_t)(sep - p));
        buf_put_u8(&tok, '.');
        if (sep < end)
            b64url(&tok, sep + 1, (size_t)(end - sep - 1));
    } else {
        buf_append(&tok, data + 1, size - 1);
    }
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
