/*
 * A small blocking HTTP/1.1 client for the admin port (PROTOCOL §7): one
 * request per connection (it sends "Connection: close"), the Authorization
 * header from the admin key, an optional JSON body, and the response's status
 * and body read back whole.
 *
 * Responses are read by their Content-Length (what ringpushd always sends) or,
 * without one, until the server closes; a chunked response is decoded. The
 * whole exchange, connect included, is bounded by timeout_ms.
 *
 * Thread: any; the functions share no state.
 */
#ifndef RP_CLIENTS_ADMIN_H
#define RP_CLIENTS_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#define RP_ADMIN_DEFAULT_PORT 7401
#define RP_ADMIN_MAX_RESPONSE (16u << 20) /* bytes of head and body together */

/* A response. body is NUL-terminated (not counted in body_len) and owned by the struct. */
struct rp_admin_resp {
    int status; /* 200, 401, ... */
    char *body;
    size_t body_len;
};

/*
 * Sends `method path` to host:port with "Authorization: Bearer <key>" (no
 * header when key is NULL or empty) and, when body is not NULL, body_len bytes
 * of it as application/json. Blocks until the whole response has arrived or
 * timeout_ms has passed (< 0: no bound). On 0, *resp holds the response,
 * whatever its status; the caller releases it with rp_admin_resp_free.
 *
 * Errors: -EINVAL (no such host; method or path empty or with a CR, LF or
 * space; a key with CR or LF; path and key together over about 3.9 KB),
 * -ECONNREFUSED and other -errno of connect, read and write, -ETIMEDOUT,
 * -RP_EFRAME (the reply is not an HTTP/1.x response, or the connection closed
 * before its Content-Length was read), -RP_ETOOLARGE (the reply is over
 * RP_ADMIN_MAX_RESPONSE), -ENOMEM. *resp is left empty on error.
 */
int rp_admin_request(const char *host, uint16_t port, const char *key, const char *method,
                     const char *path, const char *body, size_t body_len, int timeout_ms,
                     struct rp_admin_resp *resp);

/* Frees the body and zeroes *resp. Safe on a zeroed or already freed struct. */
void rp_admin_resp_free(struct rp_admin_resp *resp);

/*
 * Appends s as a JSON string literal (quotes included, control characters,
 * quote and backslash escaped; other bytes as they are) to out, which has
 * room for cap bytes. Returns the new length, or -RP_ETOOLARGE when it does
 * not fit (out is then NUL-terminated at len). For building request bodies.
 */
int rp_json_quote(char *out, size_t cap, size_t len, const char *s);

#endif
