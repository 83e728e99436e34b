/*
 * Length-prefix frame reassembly (PROTOCOL §1): a frame is a 4-byte unsigned
 * big-endian length L, then L bytes of payload (one msgpack map), with
 * 1 <= L <= max_frame. The decoder is pull style and resumable: feed it
 * whatever a receive returned, in any fragmentation, and it hands back one
 * complete payload at a time.
 *
 * Thread: a decoder belongs to one connection and is used by one thread at a
 * time; it may move to another thread with the connection (see
 * frame_dec_pending for handing over a half-received frame).
 */
#ifndef RP_PROTOCOL_FRAME_H
#define RP_PROTOCOL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR 4u

struct frame_dec {
    uint32_t max_frame;
    uint32_t need; /* declared payload length L, once the header is complete */
    uint32_t have; /* bytes held in hdr[] or buf[] (header bytes included) */
    int err;       /* sticky: 0 or the error that failed the decoder */
    uint8_t hdr[FRAME_HDR];
    uint8_t *buf;  /* FRAME_HDR + need bytes while a frame is being assembled */
    uint8_t *done; /* a buffer whose frame was handed out, freed on the next call */
};

/* An empty decoder accepting payloads of 1..max_frame bytes. Never fails. */
void frame_dec_init(struct frame_dec *d, uint32_t max_frame);

/* Frees the decoder's buffers; the struct may be initialised again. */
void frame_dec_deinit(struct frame_dec *d);

/*
 * Consumes bytes from data[0..len) up to the end of at most one frame.
 * Returns the number of bytes consumed (>= 0) and sets *frame and *flen to a
 * complete frame payload (the msgpack bytes, without the 4-byte prefix) when
 * one is complete, else *frame = NULL (and *flen = 0). The payload points into
 * `data` when the whole frame lay in it (zero copy) or into the decoder's own
 * buffer; it is valid until the next call on this decoder (and, when it points
 * into `data`, as long as `data` is). The caller loops until all bytes are
 * consumed; a call with len == 0 consumes nothing and returns 0.
 *
 * Errors: -RP_ETOOLARGE (L > max_frame), -RP_EFRAME (L == 0), -ENOMEM (the
 * assembly buffer could not be allocated). After an error the decoder stays
 * failed and every later call returns the same error.
 *
 * Memory: allocates nothing while frames arrive whole; otherwise allocates
 * one buffer of FRAME_HDR + L bytes, and only once the 4-byte header is
 * complete and checked, so a peer cannot make it reserve more than it declared
 * within max_frame.
 */
int frame_next(struct frame_dec *d, const uint8_t *data, size_t len, const uint8_t **frame,
               uint32_t *flen);

/*
 * The raw bytes of a partially received frame held inside the decoder (header
 * bytes included, in arrival order), so that a connection can be handed to
 * another thread: feeding them to a fresh decoder, followed by the rest of the
 * stream, yields the same frames. Returns the count and sets *p (NULL when 0).
 * *p is valid until the next call on this decoder. A failed decoder holds 0.
 */
size_t frame_dec_pending(const struct frame_dec *d, const uint8_t **p);

#endif
