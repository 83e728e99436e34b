/*
 * Admin routing, the bearer key check and the JSON body validation of
 * POST /v1/backup and POST /v1/messages.
 */
#include "base/err.h"
#include "engine/admin/route.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"

static enum route_id match(unsigned method, const char *target, struct route_match *m)
{
    return route_match(method, target, strlen(target), m);
}

static void test_match(void)
{
    struct route_match m;
    CHECK(match(HTTP_GET, "/healthz", &m) == ROUTE_HEALTHZ && m.id == ROUTE_HEALTHZ);
    CHECK(match(HTTP_GET, "/metrics", &m) == ROUTE_METRICS);
    CHECK(match(HTTP_GET, "/metrics?name[]=x", &m) == ROUTE_METRICS);
    CHECK(match(HTTP_POST, "/v1/backup", &m) == ROUTE_BACKUP);
    CHECK(match(HTTP_POST, "/v1/messages", &m) == ROUTE_MESSAGES);
    CHECK(match(HTTP_GET, "/v1/users/alice", &m) == ROUTE_USER);
    CHECK(m.user_len == 5 && strcmp(m.user, "alice") == 0);
    CHECK(match(HTTP_POST, "/v1/users/bob.b@x-y_z/kick", &m) == ROUTE_KICK);
    CHECK(strcmp(m.user, "bob.b@x-y_z") == 0);
    CHECK(match(HTTP_GET, "/v1/users/a%40b", &m) == ROUTE_USER && strcmp(m.user, "a@b") == 0);

    /* Wrong method, unknown or malformed paths. */
    const struct {
        unsigned method;
        const char *target;
    } none[] = {
        {HTTP_POST, "/healthz"},
        {HTTP_GET, "/v1/backup"},
        {HTTP_GET, "/v1/messages"},
        {HTTP_POST, "/v1/users/alice"},
        {HTTP_GET, "/v1/users/alice/kick"},
        {HTTP_GET, "/v1/users/"},
        {HTTP_POST, "/v1/users//kick"},
        {HTTP_POST, "/v1/users/a/kick/x"},
        {HTTP_GET, "/v1/users/a/b"},
        {HTTP_GET, "/v1/users/bad%2"},
        {HTTP_GET, "/v1/users/sp%20ace"},
        {HTTP_GET, "/v1/users/a!b"},
        {HTTP_GET, "/v1/users/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {HTTP_GET, "/"},
        {HTTP_GET, "/healthz/"},
        {HTTP_DELETE, "/metrics"},
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        if (match(none[i].method, none[i].target, &m) != ROUTE_NONE)
            fprintf(stderr, "matched: %s\n", none[i].target);
        CHECK(m.id == ROUTE_NONE);
    }
    /* 64 bytes is the longest id. */
    char path[128];
    snprintf(path, sizeof(path), "/v1/users/%064d", 7);
    CHECK(match(HTTP_GET, path, &m) == ROUTE_USER && m.user_len == 64);

    CHECK(!route_needs_auth(ROUTE_HEALTHZ));
    for (int r = ROUTE_METRICS; r < ROUTE__COUNT; r++)
        CHECK(route_needs_auth((enum route_id)r));
    CHECK(strcmp(route_name(ROUTE_KICK), "kick") == 0);
}

static bool auth(const char *key, const char *value)
{
    return route_auth_ok(key, value, value ? strlen(value) : 0);
}

static void test_auth(void)
{
    CHECK(auth("s3cret", "Bearer s3cret"));
    CHECK(auth("s3cret", "bearer s3cret")); /* the scheme is case-insensitive */
    CHECK(!auth("s3cret", NULL));
    CHECK(!auth("s3cret", ""));
    CHECK(!auth("s3cret", "Bearer"));
    CHECK(!auth("s3cret", "Bearer "));
    CHECK(!auth("s3cret", "Bearer s3cre"));
    CHECK(!auth("s3cret", "Bearer s3crett"));
    CHECK(!auth("s3cret", "Bearer S3cret"));
    CHECK(!auth("s3cret", "Bearer  s3cret"));
    CHECK(!auth("s3cret", "Basic s3cret"));
    CHECK(!auth("s3cret", "s3cret"));
    /* No key configured: nothing matches, not even an empty bearer. */
    CHECK(!auth("", "Bearer "));
    CHECK(!auth("", "Bearer"));
    CHECK(!auth("", NULL));
}

static int backup(const char *json, char *dir)
{
    const char *why = NULL;
    int r = route_parse_backup((const uint8_t *)json, json ? strlen(json) : 0, dir, &why);
    CHECK(r == 0 || (why && *why));
    return r;
}

static void test_backup(void)
{
    char dir[ROUTE_MAX_DIR];
    CHECK(backup("{\"dir\":\"/var/backups/rp-1\"}", dir) == 0);
    CHECK(strcmp(dir, "/var/backups/rp-1") == 0);
    CHECK(backup("{\"dir\":\"relative/x\"}", dir) == -RP_EREQUEST);
    CHECK(backup("{\"dir\":\"/\"}", dir) == -RP_EREQUEST);
    CHECK(backup("{\"dir\":7}", dir) == -RP_EREQUEST);
    CHECK(backup("{}", dir) == -RP_EREQUEST);
    CHECK(backup("[\"/x\"]", dir) == -RP_EREQUEST);
    CHECK(backup("{\"dir\":\"/x\"", dir) == -RP_EREQUEST);
    CHECK(backup(NULL, dir) == -RP_EREQUEST);
    char big[ROUTE_MAX_DIR + 32];
    int n = snprintf(big, sizeof(big), "{\"dir\":\"/");
    for (unsigned i = 0; i < ROUTE_MAX_DIR; i++)
        big[n++] = 'a';
    snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
    CHECK(backup(big, dir) == -RP_EREQUEST);
}

static int message(const char *json, struct route_message *m)
{
    const char *why = NULL;
    int r = route_parse_message((const uint8_t *)json, strlen(json), 10, m, &why);
    CHECK(r == 0 || (why && *why));
    return r;
}

static void test_message(void)
{
    struct route_message m;
    CHECK(message("{\"from\":\"svc\",\"to\":\"bob\",\"type\":\"text\",\"body\":\"hi\","
                  "\"cmid\":\"c-1\"}",
                  &m) == 0);
    CHECK(strcmp(m.from, "svc") == 0 && strcmp(m.to, "bob") == 0 && m.group[0] == 0);
    CHECK(strcmp(m.type, "text") == 0 && strcmp(m.cmid, "c-1") == 0);
    CHECK(m.body_len == 2 && strcmp(m.body, "hi") == 0);
    route_message_deinit(&m);
    CHECK(message("{\"from\":\"svc\",\"group\":\"g1\",\"type\":\"custom\",\"body\":\"\","
                  "\"cmid\":\"\\u00e9\"}",
                  &m) == 0);
    CHECK(strcmp(m.group, "g1") == 0 && m.to[0] == 0 && m.body_len == 0);
    CHECK(strcmp(m.cmid, "\xc3\xa9") == 0);
    route_message_deinit(&m);

    const char *bad[] = {
        "{\"to\":\"bob\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s v\",\"to\":\"bob\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"group\":\"g\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":"
        "\"c\"}",
        "{\"from\":\"s\",\"to\":7,\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"event\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"recall\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"recalled\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"\",\"body\":\"hi\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"abcdefghijklmnopq\",\"body\":\"hi\",\"cmid\":"
        "\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":3,\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":"
        "\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
        "not json",
        /* a NUL would end the C string: "order\0 1" and "order\0 2" would be one cmid */
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"o\\u00001\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"a\\u0000b\",\"cmid\":\"c\"}",
        /* not UTF-8 (RFC 8259), raw or in a string */
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"\xff\xfe\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"t\xc0\xaf\",\"body\":\"hi\",\"cmid\":\"c\"}",
        /* an escaped lone surrogate would decode to bytes that are not UTF-8,
         * and the body is stored and pushed as a msgpack str */
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"\\ud800\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"x\\udc00\",\"cmid\":\"c\"}",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"\\ud800\\u0041\",\"cmid\":"
        "\"c\"}",
        /* anything after the object */
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"} x",
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\",\"cmid\":\"c\"}{}",
    };
    /* a raw NUL ends the C string cJSON hands back: "hi\0dden" would be "hi" */
    static const char raw_nul[] =
        "{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"hi\0dden\",\"cmid\":\"c\"}";
    const char *why = NULL;
    CHECK(route_parse_message((const uint8_t *)raw_nul, sizeof(raw_nul) - 1, 10, &m, &why) ==
          -RP_EREQUEST);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = message(bad[i], &m);
        if (r != -RP_EREQUEST)
            fprintf(stderr, "case %zu: %d\n", i, r);
        CHECK(r == -RP_EREQUEST);
    }
    /* 16 bytes of type is the longest; a body over max_body (10 here) is too large. */
    CHECK(message(
              "{\"from\":\"s\",\"to\":\"b\",\"type\":\"abcdefghijklmnop\",\"body\":\"0123456789\","
              "\"cmid\":\"c\"}",
              &m) == 0);
    route_message_deinit(&m);
    CHECK(message("{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"0123456789x\","
                  "\"cmid\":\"c\"}",
                  &m) == -RP_ETOOLARGE);
    /* an escaped backslash before "u0000" is no NUL; white space may follow the object */
    CHECK(message("{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"\\\\u0000\","
                  "\"cmid\":\"c\"} \r\n",
                  &m) == 0);
    CHECK(m.body_len == 6 && strcmp(m.body, "\\u0000") == 0);
    route_message_deinit(&m);
    /* an escaped surrogate pair is one code point, stored as its UTF-8 */
    CHECK(message("{\"from\":\"s\",\"to\":\"b\",\"type\":\"text\",\"body\":\"\\ud83d\\ude00\","
                  "\"cmid\":\"c\"}",
                  &m) == 0);
    CHECK(m.body_len == 4 && memcmp(m.body, "\xf0\x9f\x98\x80", 4) == 0);
    route_message_deinit(&m);
}

int main(void)
{
    test_match();
    test_auth();
    test_backup();
    test_message();
    printf("test_admin_route: ok\n");
    return 0;
}
