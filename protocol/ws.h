/*
 * WebSocket transport (RFC 6455), I/O-free: the HTTP upgrade handshake and
 * the framing of one server-side connection. The caller feeds received bytes
 * in and sends out what this module hands back; nothing here touches a socket.
 *
 * Incoming frames are parsed by wslay (reassembly of fragments, control frames
 * between fragments, masking required from clients, automatic pong, the close
 * handshake, 1009 for a message over the limit, 1002 for a frame that breaks
 * RFC 6455). Each complete binary message is one msgpack map and goes to the
 * caller's callback; a text message closes the connection with 1003. No
 * subprotocol or extension is ever selected (the contract names none): the
 * upgrade answer carries neither header, whatever the request offered.
 *
 * Outgoing data frames are not queued through wslay, which would copy every
 * payload per connection: a push frame is encoded once and shared by every
 * recipient, so the caller writes ws_frame_header() in front of the shared
 * payload instead. Control frames wslay produces (pong, close) come out of
 * ws_take_output() and must be sent in order with the data frames.
 *
 * Thread: a struct ws belongs to one connection and is used by one thread at a
 * time; it may move to another thread with its connection.
 */
#ifndef RP_PROTOCOL_WS_H
#define RP_PROTOCOL_WS_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes an upgrade request may take. */
#define WS_HANDSHAKE_MAX 8192u

/*
 * Parses the HTTP upgrade request in p[0..len) (everything received so far).
 * Returns 0 when the request is not complete yet; a positive count (the bytes
 * of the request, which may be fewer than len) when it is a valid
 * `GET /ws` upgrade, with the `101 Switching Protocols` response appended to
 * reply; or a negative error with a 4xx response appended to reply, to be
 * sent before closing: -RP_ETOOLARGE (request over WS_HANDSHAKE_MAX, 431),
 * -ENOENT (another path, 404), -RP_EREQUEST (not a valid upgrade, 400; a
 * version other than 13, 426),
 * -ENOMEM.
 */
int ws_handshake(const uint8_t *p, size_t len, struct buf *reply);

/* The Sec-WebSocket-Accept value for a key: base64(SHA-1(key + GUID)), 28
 * characters and a NUL. */
void ws_accept_key(const char *key, size_t keylen, char out[29]);

/* Called with each complete binary message; return false to stop feeding. */
typedef bool (*ws_msg_fn)(void *arg, const uint8_t *msg, size_t len);

struct ws;

/* A server-side framing context accepting messages up to max_msg bytes.
 * NULL on ENOMEM. */
struct ws *ws_new(uint32_t max_msg, ws_msg_fn fn, void *arg);
void ws_free(struct ws *ws);

/* Re-targets the message callback (the connection moved). */
void ws_set_handler(struct ws *ws, ws_msg_fn fn, void *arg);

/*
 * Feeds received bytes; calls fn for each complete binary message in order.
 * Returns 0, or -RP_ECLOSED once the connection must close (a close frame was
 * received or queued: a text message (1003), an unmasked or malformed frame
 * (1002), a message over max_msg (1009)); then send ws_take_output() and
 * close. -ENOMEM on allocation failure.
 */
int ws_feed(struct ws *ws, const uint8_t *p, size_t len);

/* Queue a close frame with this status (e.g. 1000, 1001). */
void ws_close(struct ws *ws, uint16_t status);

/* Control-frame bytes produced since the last call (pong, close), to be sent
 * before any data frame queued later. Sets *len; the pointer is valid until the
 * next call on ws. NULL when there is nothing. */
const uint8_t *ws_take_output(struct ws *ws, size_t *len);

/* True once a close frame has been sent or received. */
bool ws_closing(const struct ws *ws);

/* Writes the header of a final, unmasked binary frame of n payload bytes into
 * hdr; returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t hdr[10], uint64_t n);

#endif
