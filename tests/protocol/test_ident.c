/*
 * Identifiers: the id character set byte by byte, length limits, and
 * conversation ids built and parsed back.
 */
#include "check.h"

#include "protocol/ident.h"

#include <string.h>

static void test_charset(void)
{
    for (int c = 0; c < 256; c++) {
        char s[1] = {(char)c};
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '@' || c == '-';
        CHECK(ident_user_ok((struct strv){s, 1}) == want);
        CHECK(ident_device_ok((struct strv){s, 1}) == want);
    }
    char id[65];
    memset(id, 'a', sizeof(id));
    CHECK(!ident_user_ok((struct strv){id, 0}));
    CHECK(ident_user_ok((struct strv){id, 64}));
    CHECK(!ident_user_ok((struct strv){id, 65}));
    CHECK(ident_device_ok((struct strv){id, 32}));
    CHECK(!ident_device_ok((struct strv){id, 33}));
}

static void test_conv(void)
{
    char out[IDENT_CONV_MAX];
    struct strv a, b;
    uint32_t n = ident_conv_direct(out, strv_c("bob"), strv_c("alice"));
    CHECK(n == 11 && memcmp(out, "d:alice:bob", n) == 0);
    CHECK(ident_conv_direct(out, strv_c("alice"), strv_c("bob")) == n);
    CHECK(memcmp(out, "d:alice:bob", n) == 0);
    CHECK(ident_conv_parse((struct strv){out, n}, &a, &b) == CONV_DIRECT);
    CHECK(strv_eq_c(a, "alice") && strv_eq_c(b, "bob"));
    /* byte-wise: "Z" < "a", and a prefix sorts first */
    n = ident_conv_direct(out, strv_c("a"), strv_c("Z"));
    CHECK(memcmp(out, "d:Z:a", n) == 0);
    n = ident_conv_direct(out, strv_c("ab"), strv_c("a"));
    CHECK(memcmp(out, "d:a:ab", n) == 0);
    n = ident_conv_group(out, strv_c("team"));
    CHECK(n == 6 && memcmp(out, "g:team", n) == 0);
    CHECK(ident_conv_parse((struct strv){out, n}, &a, NULL) == CONV_GROUP && strv_eq_c(a, "team"));

    /* the longest direct id fits */
    char x[64], y[64];
    memset(x, 'x', 64);
    memset(y, 'y', 64);
    n = ident_conv_direct(out, (struct strv){y, 64}, (struct strv){x, 64});
    CHECK(n == IDENT_CONV_MAX);
    CHECK(ident_conv_parse((struct strv){out, n}, &a, &b) == CONV_DIRECT && a.len == 64);

    const char *bad[] = {"",        "d",  "d:",    "d:a", "d:a:", "d::a",  "d:b:a",
                         "d:a:b:c", "g:", "g:a:b", "x:a", "da:b", "g:a b", "D:a:b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ident_conv_parse(strv_c(bad[i]), &a, &b) == CONV_BAD);
    CHECK(ident_conv_parse(strv_c("d:a:a"), NULL, NULL) == CONV_DIRECT);
}

int main(void)
{
    test_charset();
    test_conv();
    printf("test_ident: ok\n");
    return 0;
}
