/*
 * JWT HS256: sign/verify round trip, then hand-crafted tokens (with this
 * file's own base64url and HMAC) for every way a token must be refused:
 * alg none, HS512, RS256, bad signature, wrong key, expiry, malformed base64,
 * missing or mistyped sub/exp, sub outside the id charset, and the token
 * truncated at each byte. Then the JSON behind a valid signature: U+0000 in
 * any string; anything after the JSON value but whitespace; a claim the
 * server reads, or the header's alg, given twice; NumericDates with fractions
 * (accepted) and out of range; nbf ahead of now by more than the leeway.
 */
#include "check.h"

#include "base/buf.h"
#include "base/err.h"
#include "protocol/jwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static const uint8_t key[] = "test-secret-0123456789";
#define KEYLEN (sizeof(key) - 1)
#define NOW    1700000000ull

static void b64url(struct buf *b, const void *data, size_t n)
{
    /* EVP_EncodeBlock writes padded standard base64; convert it */
    unsigned char tmp[4096];
    CHECK(n < sizeof(tmp) / 2);
    int m = EVP_EncodeBlock(tmp, data, (int)n);
    for (int i = 0; i < m; i++) {
        char c = (char)tmp[i];
        if (c == '=')
            break;
        buf_put_u8(b, (uint8_t)(c == '+' ? '-' : c == '/' ? '_' : c));
    }
}

/* header.claims.signature with the given key; sign false leaves the signature part empty. */
static void craft_n(struct buf *b, const char *hdr, size_t hlen, const char *claims, size_t clen,
                    const uint8_t *k, size_t klen, bool sign)
{
    buf_reset(b);
    b64url(b, hdr, hlen);
    buf_put_u8(b, '.');
    b64url(b, claims, clen);
    buf_put_u8(b, '.');
    if (sign) {
        uint8_t mac[32];
        unsigned ml = 0;
        CHECK(HMAC(EVP_sha256(), k, (int)klen, b->data, b->len - 1, mac, &ml));
        b64url(b, mac, ml);
    }
    CHECK(!buf_failed(b));
}

static void craft(struct buf *b, const char *hdr, const char *claims, const uint8_t *k, size_t klen,
                  bool sign)
{
    craft_n(b, hdr, strlen(hdr), claims, strlen(claims), k, klen, sign);
}

static int verify(const struct buf *b, struct jwt_claims *c)
{
    return jwt_verify_hs256((const char *)b->data, b->len, key, KEYLEN, NOW, c);
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void test_round_trip(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    CHECK(jwt_sign_hs256("alice", 5, NOW + 60, key, KEYLEN, &b) == 0);
    CHECK(verify(&b, &c) == 0);
    CHECK(strcmp(c.sub, "alice") == 0 && c.sub_len == 5 && c.exp == NOW + 60);
    /* expiry is exp <= now */
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, NOW + 59, &c) == 0);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, NOW + 60, &c) == -RP_EEXPIRED);
    /* wrong key */
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN - 1, NOW, &c) == -RP_EAUTH);
    /* every single-bit flip of every byte is refused */
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (uint8_t)(1u << bit);
            CHECK(verify(&b, &c) == -RP_EAUTH);
            b.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* truncated at each byte */
    for (size_t k = 0; k < b.len; k++)
        CHECK(jwt_verify_hs256((const char *)b.data, k, key, KEYLEN, NOW, &c) == -RP_EAUTH);
    CHECK(verify(&b, &c) == 0);
    /* a 64-byte sub of every id character */
    const char *sub = "A-Za-z0-9_.@-0123456789abcdef0123456789abcdef0123456789abcdef012";
    buf_reset(&b);
    CHECK(jwt_sign_hs256(sub, 64, NOW + 1, key, KEYLEN, &b) == 0);
    CHECK(verify(&b, &c) == 0 && c.sub_len == 64 && strcmp(c.sub, sub) == 0);
    buf_reset(&b);
    CHECK(jwt_sign_hs256("x", 65, NOW + 1, key, KEYLEN, &b) == -EINVAL);
    buf_deinit(&b);
}

static void test_refusals(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    const char *claims = "{\"sub\":\"alice\",\"exp\":1700000100}";

    /* our own crafting agrees with the library's signing */
    craft(&b, HS256, claims, key, KEYLEN, true);
    CHECK(verify(&b, &c) == 0 && strcmp(c.sub, "alice") == 0 && c.exp == 1700000100);
    craft(&b, "{\"alg\":\"HS256\"}", claims, key, KEYLEN, true);
    CHECK(verify(&b, &c) == 0);

    /* alg none, unsigned and signed */
    craft(&b, "{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, key, KEYLEN, false);
    CHECK(verify(&b, &c) == -RP_EAUTH);
    craft(&b, "{\"alg\":\"none\"}", claims, key, KEYLEN, true);
    CHECK(verify(&b, &c) == -RP_EAUTH);
    const char *algs[] = {"{\"alg\":\"HS512\"}",
                          "{\"alg\":\"RS256\"}",
                          "{\"alg\":\"hs256\"}",
                          "{\"alg\":\"HS256 \"}",
                          "{\"typ\":\"JWT\"}",
                          "{\"alg\":256}",
                          "{\"alg\":\"HS256\",\"crit\":[\"x\"]}",
                          "[\"HS256\"]",
                          "not json"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        craft(&b, algs[i], claims, key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    /* signed with another key */
    craft(&b, HS256, claims, (const uint8_t *)"other", 5, true);
    CHECK(verify(&b, &c) == -RP_EAUTH);

    /* claims */
    struct {
        const char *claims;
        int want;
    } cases[] = {
        {"{\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"alice\"}", -RP_EAUTH},
        {"{\"sub\":\"alice\",\"exp\":\"1700000100\"}", -RP_EAUTH},
        {"{\"sub\":\"alice\",\"exp\":-1}", -RP_EAUTH},
        {"{\"sub\":\"alice\",\"exp\":1e300}", -RP_EAUTH},
        {"{\"sub\":7,\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"\",\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"al ice\",\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"al:ice\",\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"\xc3\xa9\",\"exp\":1700000100}", -RP_EAUTH},
        {"{\"sub\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefX\","
         "\"exp\":1700000100}",
         -RP_EAUTH},
        {"{\"sub\":\"alice\",\"exp\":1700000000}", -RP_EEXPIRED},
        {"{\"sub\":\"alice\",\"exp\":0}", -RP_EEXPIRED},
        {"{\"sub\":\"alice\",\"exp\":1700000001}", 0},
        {"[1,2]", -RP_EAUTH},
        {"{\"sub\":\"alice\",\"exp\":1700000100", -RP_EAUTH},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        craft(&b, HS256, cases[i].claims, key, KEYLEN, true);
        CHECK(verify(&b, &c) == cases[i].want);
    }

    /* malformed shapes and base64 */
    const char *bad[] = {"",      ".",      "..", "a.b", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9..x",
                         "=.=.=", "a b.c.d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(jwt_verify_hs256(bad[i], strlen(bad[i]), key, KEYLEN, NOW, &c) == -RP_EAUTH);
    craft(&b, HS256, claims, key, KEYLEN, true);
    /* padding, standard-alphabet characters, a stray character in each part */
    const char junk[] = {'=', '+', '/', '*', ' '};
    size_t d1 = (size_t)((const uint8_t *)memchr(b.data, '.', b.len) - b.data);
    size_t positions[] = {0, d1 - 1, d1 + 1, b.len - 1};
    for (size_t p = 0; p < 4; p++) {
        for (size_t j = 0; j < sizeof(junk); j++) {
            uint8_t save = b.data[positions[p]];
            b.data[positions[p]] = (uint8_t)junk[j];
            CHECK(verify(&b, &c) == -RP_EAUTH);
            b.data[positions[p]] = save;
        }
    }
    /* an overlong token is refused unread */
    char *huge = malloc(JWT_TOKEN_MAX + 2);
    memset(huge, 'a', JWT_TOKEN_MAX + 1);
    huge[10] = huge[20] = '.';
    CHECK(jwt_verify_hs256(huge, JWT_TOKEN_MAX + 1, key, KEYLEN, NOW, &c) == -RP_EAUTH);
    free(huge);
    buf_deinit(&b);
}

/* U+0000 in any string, raw or escaped, would cut the string short in cJSON. */
static void test_nul(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    const char *claims[] = {
        "{\"sub\":\"alice\\u0000mallory\",\"exp\":1700000100}",
        "{\"sub\":\"alice\\u0000\",\"exp\":1700000100}",
        "{\"sub\":\"alice\",\"exp\":1700000100,\"note\":\"x\\u0000y\"}",
        "{\"sub\\u0000x\":\"mallory\",\"sub\":\"alice\",\"exp\":1700000100}",
        "{\"sub\":\"alice\",\"exp\":1700000100,\"n\":[\"\\\\\\u0000\"]}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        craft(&b, HS256, claims[i], key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    craft(&b, "{\"alg\":\"HS256\",\"kid\":\"\\u0000\"}", "{\"sub\":\"alice\",\"exp\":1700000100}",
          key, KEYLEN, true);
    CHECK(verify(&b, &c) == -RP_EAUTH);
    /* raw NUL bytes, which JSON never allows, in a string and after the object */
    static const char raw_sub[] = "{\"sub\":\"alice\0mallory\",\"exp\":1700000100}";
    craft_n(&b, HS256, strlen(HS256), raw_sub, sizeof(raw_sub) - 1, key, KEYLEN, true);
    CHECK(verify(&b, &c) == -RP_EAUTH);
    static const char raw_tail[] = "{\"sub\":\"alice\",\"exp\":1700000100}\0";
    craft_n(&b, HS256, strlen(HS256), raw_tail, sizeof(raw_tail) - 1, key, KEYLEN, true);
    CHECK(verify(&b, &c) == -RP_EAUTH);
    /* an escaped backslash followed by the text u0000, and other escapes, are fine */
    craft(&b, HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"n\":\"\\\\u0000 \\u0001\"}", key,
          KEYLEN, true);
    CHECK(verify(&b, &c) == 0 && c.sub_len == 5 && strcmp(c.sub, "alice") == 0);
    craft(&b, HS256, "{\"sub\":\"\\u0061lice\",\"exp\":1700000100}", key, KEYLEN, true);
    CHECK(verify(&b, &c) == 0 && c.sub_len == 5 && strcmp(c.sub, "alice") == 0);
    buf_deinit(&b);
}

/* One JSON value per segment, nothing after it but whitespace, no stray control bytes. */
static void test_strict_json(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    const char *ok = "{\"sub\":\"alice\",\"exp\":1700000100}";
    const char *claims[] = {
        "{\"sub\":\"alice\",\"exp\":1700000100}x",
        "{\"sub\":\"alice\",\"exp\":1700000100}{}",
        "{\"sub\":\"alice\",\"exp\":1700000100} ,",
        "{\"sub\":\"alice\",\"exp\":1700000100}\n{\"sub\":\"mallory\"}",
        "{\"sub\":\"alice\",\"exp\":1700000100}\x0b",
        "{\"sub\":\"alice\",\"exp\":1700000100}\x1f",
        "{\"sub\":\"alice\",\x01\"exp\":1700000100}",
        "\x0c{\"sub\":\"alice\",\"exp\":1700000100}",
        "{\"sub\":\"alice\",\"exp\":1700000100,\"n\":\"a\x7f\x01\"}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        craft(&b, HS256, claims[i], key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    const char *hdrs[] = {"{\"alg\":\"HS256\"}x", "{\"alg\":\"HS256\"}]", "{\"alg\":\"HS256\"}\"\"",
                          "{\"alg\":\"HS256\"}\x01"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        craft(&b, hdrs[i], ok, key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    /* JSON whitespace before and after the value, and inside it, is fine */
    craft(&b, " {\"alg\":\"HS256\"}\r\n", "\t{ \"sub\" : \"alice\",\n\"exp\":1700000100 } \t\r\n ",
          key, KEYLEN, true);
    CHECK(verify(&b, &c) == 0 && strcmp(c.sub, "alice") == 0 && c.exp == 1700000100);
    buf_deinit(&b);
}

/* A name the server reads may appear once: parsers differ on which duplicate wins. */
static void test_duplicates(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    const char *claims[] = {
        "{\"sub\":\"mallory\",\"sub\":\"carol\",\"exp\":1700000100}",
        "{\"sub\":\"carol\",\"exp\":1700000100,\"sub\":\"carol\"}",
        "{\"sub\":\"alice\",\"exp\":1700000100,\"exp\":4000000000}",
        "{\"sub\":\"alice\",\"exp\":1700000000,\"exp\":1700000100}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        craft(&b, HS256, claims[i], key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    const char *ok = "{\"sub\":\"alice\",\"exp\":1700000100}";
    const char *hdrs[] = {"{\"alg\":\"HS256\",\"alg\":\"none\"}",
                          "{\"alg\":\"none\",\"alg\":\"HS256\"}",
                          "{\"alg\":\"HS256\",\"alg\":\"HS256\"}"};
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        craft(&b, hdrs[i], ok, key, KEYLEN, true);
        CHECK(verify(&b, &c) == -RP_EAUTH);
    }
    /* names the server does not read may repeat; case and nesting make other names */
    craft(&b, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"typ\":\"x\",\"ALG\":\"none\"}",
          "{\"sub\":\"alice\",\"exp\":1700000100,\"aud\":1,\"aud\":2,\"Sub\":\"mallory\","
          "\"o\":{\"sub\":1,\"sub\":2}}",
          key, KEYLEN, true);
    CHECK(verify(&b, &c) == 0 && strcmp(c.sub, "alice") == 0);
    buf_deinit(&b);
}

/* NumericDate: any finite non-negative number of seconds, a fraction allowed. */
static void test_numeric_dates(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    struct {
        const char *exp;
        int want;
        uint64_t exp_s; /* when accepted */
    } cases[] = {
        {"1700000600.5", 0, 1700000600},
        {"1700000001.0", 0, 1700000001},
        {"1.7000006e9", 0, 1700000600},
        {"17000006000e-1", 0, 1700000600},
        {"1700000001.000001", 0, 1700000001},
        {"9007199254740992", 0, 9007199254740992ull},
        /* exp counts in whole seconds, rounded down: within the current one it has passed */
        {"1700000000.999", -RP_EEXPIRED, 0},
        {"1699999999.5", -RP_EEXPIRED, 0},
        {"0.5", -RP_EEXPIRED, 0},
        {"-0", -RP_EEXPIRED, 0},
        {"-1", -RP_EAUTH, 0},
        {"-0.5", -RP_EAUTH, 0},
        {"-1e-300", -RP_EAUTH, 0},
        {"1e300", -RP_EAUTH, 0},
        {"1e999", -RP_EAUTH, 0},
        {"-1e999", -RP_EAUTH, 0},
        {"9007199254740994", -RP_EAUTH, 0},
        {"true", -RP_EAUTH, 0},
        {"null", -RP_EAUTH, 0},
        {"[1700000600]", -RP_EAUTH, 0},
        {"NaN", -RP_EAUTH, 0},
        {"Infinity", -RP_EAUTH, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char claims[128];
        snprintf(claims, sizeof(claims), "{\"sub\":\"alice\",\"exp\":%s}", cases[i].exp);
        craft(&b, HS256, claims, key, KEYLEN, true);
        int r = verify(&b, &c);
        if (r != cases[i].want)
            fprintf(stderr, "exp %s: %d, want %d\n", cases[i].exp, r, cases[i].want);
        CHECK(r == cases[i].want);
        CHECK(r != 0 || (c.exp == cases[i].exp_s && strcmp(c.sub, "alice") == 0));
    }
    buf_deinit(&b);
}

/* nbf: refused while more than JWT_NBF_LEEWAY seconds ahead, rounded up. */
static void test_nbf(void)
{
    struct buf b;
    struct jwt_claims c;
    buf_init(&b);
    _Static_assert(JWT_NBF_LEEWAY == 5, "the cases below are written for a 5 s leeway");
    struct {
        const char *nbf;
        int want;
    } cases[] = {
        {"1700000600", -RP_EAUTH},
        {"1700000006", -RP_EAUTH},
        {"1700000005.5", -RP_EAUTH},
        {"1700000005.000001", -RP_EAUTH},
        {"1700000005", 0},
        {"1700000004.5", 0},
        {"1700000000", 0},
        {"1600000000.25", 0},
        {"0", 0},
        /* mistyped or out of range */
        {"\"1600000000\"", -RP_EAUTH},
        {"-1", -RP_EAUTH},
        {"1e999", -RP_EAUTH},
        {"null", -RP_EAUTH},
        {"false", -RP_EAUTH},
        /* given twice, even when both would pass */
        {"1600000000,\"nbf\":1600000000", -RP_EAUTH},
        {"1600000000,\"nbf\":1800000000", -RP_EAUTH},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char claims[128];
        snprintf(claims, sizeof(claims), "{\"sub\":\"alice\",\"nbf\":%s,\"exp\":1700000600}",
                 cases[i].nbf);
        craft(&b, HS256, claims, key, KEYLEN, true);
        int r = verify(&b, &c);
        if (r != cases[i].want)
            fprintf(stderr, "nbf %s: %d, want %d\n", cases[i].nbf, r, cases[i].want);
        CHECK(r == cases[i].want);
    }
    /* the same token, before and after its time */
    craft(&b, HS256, "{\"sub\":\"alice\",\"exp\":1700000600,\"nbf\":1700000100}", key, KEYLEN,
          true);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, 1700000094, &c) == -RP_EAUTH);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, 1700000095, &c) == 0);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, 1700000599, &c) == 0);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, 1700000600, &c) ==
          -RP_EEXPIRED);
    /* nbf after exp: never valid */
    craft(&b, HS256, "{\"sub\":\"alice\",\"exp\":1700000600,\"nbf\":1700000700}", key, KEYLEN,
          true);
    CHECK(jwt_verify_hs256((const char *)b.data, b.len, key, KEYLEN, 1700000500, &c) == -RP_EAUTH);
    buf_deinit(&b);
}

int main(void)
{
    test_round_trip();
    test_refusals();
    test_nul();
    test_strict_json();
    test_duplicates();
    test_numeric_dates();
    test_nbf();
    printf("test_jwt: ok\n");
    return 0;
}
