/*
 * Routing and validation of admin requests (see route.h). The table below is
 * the whole API surface: a method, a fixed path or a /v1/users/<user>[/kick]
 * pattern, and whether the key is needed.
 */
#include "engine/admin/route.h"

#include "base/err.h"
#include "protocol/utf8.h"

#include <cJSON.h>
#include <errno.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct route_def {
    unsigned method;
    const char *path;
    bool auth;
    const char *name;
};

static const struct route_def routes[ROUTE__COUNT] = {
    [ROUTE_NONE] = {0, NULL, false, "none"},
    [ROUTE_HEALTHZ] = {HTTP_GET, "/healthz", false, "healthz"},
    [ROUTE_METRICS] = {HTTP_GET, "/metrics", true, "metrics"},
    [ROUTE_BACKUP] = {HTTP_POST, "/v1/backup", true, "backup"},
    [ROUTE_MESSAGES] = {HTTP_POST, "/v1/messages", true, "messages"},
    [ROUTE_USER] = {HTTP_GET, NULL, true, "user"},
    [ROUTE_KICK] = {HTTP_POST, NULL, true, "kick"},
};
_Static_assert(sizeof(routes) / sizeof(routes[0]) == ROUTE__COUNT, "one entry per route");

bool route_valid_id(const char *s, size_t len)
{
    if (len == 0 || len > ROUTE_MAX_ID)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '@' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode one path segment into out (at most ROUTE_MAX_ID bytes) and
 * validate it as a user id. */
static bool decode_user(const char *s, size_t len, struct route_match *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        if (n == ROUTE_MAX_ID)
            return false;
        out->user[n++] = ch;
    }
    out->user[n] = '\0';
    out->user_len = n;
    return route_valid_id(out->user, n);
}

static bool path_is(const char *p, size_t len, const char *fixed)
{
    return strlen(fixed) == len && memcmp(p, fixed, len) == 0;
}

enum route_id route_match(unsigned method, const char *target, size_t len, struct route_match *out)
{
    memset(out, 0, sizeof(*out));
    const char *q = memchr(target, '?', len);
    if (q)
        len = (size_t)(q - target);
    for (unsigned i = 0; i < ROUTE__COUNT; i++) {
        if (routes[i].path && routes[i].method == method && path_is(target, len, routes[i].path))
            return out->id = (enum route_id)i;
    }
    static const char prefix[] = "/v1/users/";
    size_t plen = sizeof(prefix) - 1;
    if (len <= plen || memcmp(target, prefix, plen) != 0)
        return out->id = ROUTE_NONE;
    const char *seg = target + plen;
    size_t slen = len - plen;
    const char *slash = memchr(seg, '/', slen);
    enum route_id id = ROUTE_USER;
    if (slash) {
        if (!path_is(slash, slen - (size_t)(slash - seg), "/kick"))
            return out->id = ROUTE_NONE;
        slen = (size_t)(slash - seg);
        id = ROUTE_KICK;
    }
    if (routes[id].method != method || !decode_user(seg, slen, out))
        return out->id = ROUTE_NONE;
    return out->id = id;
}

const char *route_name(enum route_id id)
{
    return (unsigned)id < ROUTE__COUNT ? routes[id].name : "none";
}

bool route_needs_auth(enum route_id id)
{
    return (unsigned)id < ROUTE__COUNT ? routes[id].auth : true;
}

bool route_auth_ok(const char *key, const char *auth, size_t auth_len)
{
    static const char scheme[] = "Bearer ";
    size_t klen = strlen(key);
    const char *given = "";
    size_t glen = 0;
    if (auth && auth_len >= sizeof(scheme) - 1 &&
        strncasecmp(auth, scheme, sizeof(scheme) - 1) == 0) {
        given = auth + sizeof(scheme) - 1;
        glen = auth_len - (sizeof(scheme) - 1);
    }
    /* Hash both sides so the comparison's time depends on neither length nor
     * content; an empty configured key is "no admin access". */
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, klen, a);
    SHA256((const unsigned char *)given, glen, b);
    bool same = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    return same && klen > 0;
}

/* ---- JSON bodies ---- */

/* Does the JSON text hold a \u0000 escape? cJSON would decode it into a
 * NUL that ends the C string early: "a\u0000b" would be taken as "a". */
static bool has_nul_escape(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\\')
            continue;
        if (p[i + 1] == 'u' && i + 5 < len && memcmp(p + i + 2, "0000", 4) == 0)
            return true;
        i++; /* the escaped character, a backslash among them */
    }
    return false;
}

static bool only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

/*
 * Whether a member name of o appears twice. JSON parsers disagree on which
 * of two equal names counts (cJSON takes the first, client frames here the
 * last), so a proxy that checked one could pass the other: such a body is
 * refused. Bodies have a handful of members; past ROUTE_MAX_MEMBERS the body
 * is refused too, which bounds this quadratic walk.
 */
#define ROUTE_MAX_MEMBERS 64

static const char *members_refused(const cJSON *o)
{
    unsigned n = 0;
    for (const cJSON *a = o->child; a; a = a->next, n++) {
        if (n >= ROUTE_MAX_MEMBERS)
            return "the object has too many members";
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return "a name appears twice in the object";
    }
    return NULL;
}

/* A JSON object: valid UTF-8 (RFC 8259), one value and nothing after it, no
 * NUL anywhere (raw, which JSON never allows, or escaped in a string), at
 * most ROUTE_MAX_MEMBERS members and no name twice. */
static cJSON *parse_object(const uint8_t *body, size_t len, const char **why)
{
    if (!body || len == 0) {
        *why = "a JSON object body is required";
        return NULL;
    }
    if (!utf8_valid(body, len)) {
        *why = "the body is not valid UTF-8";
        return NULL;
    }
    if (memchr(body, 0, len) || has_nul_escape(body, len)) {
        *why = "strings must not contain U+0000";
        return NULL;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts((const char *)body, len, &end, 0);
    if (!o || !cJSON_IsObject(o) || !end || !only_space(end, (const char *)body + len)) {
        if (!o) /* cJSON also refuses \u escapes that are no character */
            *why = "the body is not valid JSON (or has an escape that is no character, such as "
                   "a lone surrogate)";
        else if (!cJSON_IsObject(o))
            *why = "the body is not a JSON object";
        else
            *why = "data after the JSON object";
        cJSON_Delete(o);
        return NULL;
    }
    const char *refused = members_refused(o);
    if (refused) {
        cJSON_Delete(o);
        *why = refused;
        return NULL;
    }
    return o;
}

/* A string member copied into out (cap bytes incl. NUL). 1 copied, 0 absent,
 * -1 present but not a string or too long or shorter than min. */
static int get_str(const cJSON *o, const char *name, char *out, size_t cap, size_t min)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -1;
    size_t n = strlen(v->valuestring);
    if (n < min || n >= cap)
        return -1;
    memcpy(out, v->valuestring, n + 1);
    return 1;
}

int route_parse_backup(const uint8_t *body, size_t len, char *dir, const char **why)
{
    cJSON *o = parse_object(body, len, why);
    if (!o)
        return -RP_EREQUEST;
    int r = get_str(o, "dir", dir, ROUTE_MAX_DIR, 2);
    cJSON_Delete(o);
    if (r <= 0 || dir[0] != '/') {
        *why = "\"dir\" must be an absolute path";
        return -RP_EREQUEST;
    }
    return 0;
}

static const char *const reserved_types[] = {"event", "recall", "recalled"};

int route_parse_message(const uint8_t *body, size_t len, size_t max_body, struct route_message *m,
                        const char **why)
{
    memset(m, 0, sizeof(*m));
    int err = -RP_EREQUEST;
    cJSON *o = parse_object(body, len, why);
    if (!o)
        return -RP_EREQUEST;
    if (get_str(o, "from", m->from, sizeof(m->from), 1) != 1 ||
        !route_valid_id(m->from, strlen(m->from))) {
        *why = "\"from\" must be a user id";
        goto free_obj;
    }
    int has_to = get_str(o, "to", m->to, sizeof(m->to), 1);
    int has_group = get_str(o, "group", m->group, sizeof(m->group), 1);
    if (has_to < 0 || has_group < 0 || has_to + has_group != 1) {
        *why = "exactly one of \"to\" and \"group\" must be given";
        goto free_obj;
    }
    const char *id = has_to ? m->to : m->group;
    if (!route_valid_id(id, strlen(id))) {
        *why = has_to ? "\"to\" must be a user id" : "\"group\" must be a group id";
        goto free_obj;
    }
    if (get_str(o, "type", m->type, sizeof(m->type), 1) != 1) {
        *why = "\"type\" must be a string of 1-16 bytes";
        goto free_obj;
    }
    for (size_t i = 0; i < sizeof(reserved_types) / sizeof(reserved_types[0]); i++) {
        if (strcmp(m->type, reserved_types[i]) == 0) {
            *why = "this \"type\" is reserved for the server";
            goto free_obj;
        }
    }
    if (get_str(o, "cmid", m->cmid, sizeof(m->cmid), 1) != 1) {
        *why = "\"cmid\" must be a string of 1-64 bytes";
        goto free_obj;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "body");
    if (!cJSON_IsString(b) || !b->valuestring) {
        *why = "\"body\" must be a string";
        goto free_obj;
    }
    m->body_len = strlen(b->valuestring);
    if (m->body_len > max_body) {
        *why = "\"body\" is over max_body";
        err = -RP_ETOOLARGE;
        goto free_obj;
    }
    m->body = strdup(b->valuestring);
    if (!m->body) {
        err = -ENOMEM;
        goto free_obj;
    }
    err = 0;
free_obj:
    cJSON_Delete(o);
    return err;
}

void route_message_deinit(struct route_message *m)
{
    free(m->body);
    m->body = NULL;
}
