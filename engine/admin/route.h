/*
 * The admin API's routing table and request validation (PROTOCOL §7), without
 * I/O: which endpoint a method and target name, whether the caller holds the
 * admin key, and the decoding of JSON bodies into checked values.
 *
 * Thread: pure functions; any thread.
 */
#ifndef RP_ENGINE_ADMIN_ROUTE_H
#define RP_ENGINE_ADMIN_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum route_id {
    ROUTE_NONE, /* no endpoint: 404 */
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_BACKUP,
    ROUTE_MESSAGES,
    ROUTE_USER,
    ROUTE_KICK,
    ROUTE__COUNT
};

#define ROUTE_MAX_ID   64u
#define ROUTE_MAX_DIR  1024u
#define ROUTE_MAX_TYPE 16u
#define ROUTE_MAX_BODY 32768u /* PROTOCOL §8 default max_body */

struct route_match {
    enum route_id id;
    char user[ROUTE_MAX_ID + 1]; /* ROUTE_USER, ROUTE_KICK: the validated user id */
    size_t user_len;
};

/*
 * Match a method (enum http_method) and request target. The query string is
 * ignored. A path naming a user whose id is not valid (PROTOCOL §2) matches
 * ROUTE_NONE. Returns the route (also in out->id).
 */
enum route_id route_match(unsigned method, const char *target, size_t len, struct route_match *out);

/* The endpoint's name for logs and metrics ("healthz", "messages", ...). */
const char *route_name(enum route_id id);

/* Every endpoint but /healthz needs the admin key. */
bool route_needs_auth(enum route_id id);

/*
 * Does the Authorization value `auth` (NULL: absent) carry "Bearer <key>"?
 * The comparison takes the same time whatever the value (both sides are
 * hashed, the digests compared with CRYPTO_memcmp). An empty key never
 * matches: with no admin_key configured only /healthz answers.
 */
bool route_auth_ok(const char *key, const char *auth, size_t auth_len);

/* PROTOCOL §2 user / group id: 1-64 bytes of [A-Za-z0-9_.@-]. */
bool route_valid_id(const char *s, size_t len);

/*
 * POST /v1/backup {"dir": PATH}: a non-empty absolute path of at most
 * ROUTE_MAX_DIR - 1 bytes, copied NUL-terminated into dir.
 * 0, or -RP_EREQUEST with *why set to a static explanation.
 */
int route_parse_backup(const uint8_t *body, size_t len, char *dir, const char **why);

/* POST /v1/messages: a send on behalf of `from` (PROTOCOL §5 rules). */
struct route_message {
    char from[ROUTE_MAX_ID + 1];
    char to[ROUTE_MAX_ID + 1];    /* empty when group is set */
    char group[ROUTE_MAX_ID + 1]; /* empty when to is set */
    char type[ROUTE_MAX_TYPE + 1];
    char cmid[ROUTE_MAX_ID + 1];
    char *body; /* heap, NUL-terminated; free with route_message_deinit */
    size_t body_len;
};

/*
 * {"from":U,"to":USER | "group":GID,"type":T,"body":STR,"cmid":C}: ids
 * valid, exactly one of to/group, type 1-16 bytes and not reserved (event,
 * recall, recalled), cmid 1-64 bytes, body a string of at most max_body
 * bytes. Returns 0; -RP_EREQUEST with *why; -RP_ETOOLARGE (body over
 * max_body); -ENOMEM.
 */
int route_parse_message(const uint8_t *body, size_t len, size_t max_body, struct route_message *m,
                        const char **why);
void route_message_deinit(struct route_message *m);

#endif
