/*
 * UTF-8 validation, shared by the binary protocol (every str field) and the
 * admin API (every JSON body, RFC 8259).
 */
#ifndef RP_PROTOCOL_UTF8_H
#define RP_PROTOCOL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when the len bytes at data are valid UTF-8: no overlong forms, no
 * surrogates, nothing past U+10FFFF. */
bool utf8_valid(const void *data, size_t len);

/* The length (1-4) of the valid UTF-8 sequence that starts at data, of the
 * len bytes there (len > 0), or 0 when it is not one. */
size_t utf8_seq(const void *data, size_t len);

#endif
