/*
 * Allocation-free pre-scan of one received payload, run before anything
 * decodes it. It rejects every input that could make a msgpack decoder
 * reserve memory out of proportion to the bytes received: msgpack-c 4.0.0, for
 * one, tries to allocate ~60 GB for the 5 bytes `dd 97 00 00 00` (an array32
 * that declares 2.5 billion elements).
 *
 * Thread: pure function, any thread.
 */
#ifndef RP_PROTOCOL_MPSCAN_H
#define RP_PROTOCOL_MPSCAN_H

#include <stddef.h>
#include <stdint.h>

/*
 * 0 iff p[0..len) is exactly one msgpack map whose every declared str/bin/ext
 * size fits in the remaining bytes, whose declared element counts, summed over
 * all open containers, never exceed the bytes left (each element needs at
 * least one byte), and after which nothing trails. The never-used byte 0xc1
 * fails. Nesting depth is not limited (the walk keeps no per-level state);
 * note that msgpack-c's own unpacker stops at 32 levels
 * (MSGPACK_EMBED_STACK_SIZE), so "scan passes" implies "msgpack-c decodes"
 * only up to that depth. Else -RP_EFRAME.
 */
int mpscan_map(const uint8_t *p, size_t len);

/*
 * Like mpscan_map but for exactly one msgpack value of any type (a stored
 * `data` map, an element of an array). 0 or -RP_EFRAME.
 */
int mpscan_value(const uint8_t *p, size_t len);

#endif
