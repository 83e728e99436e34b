/*
 * A string view: a pointer and a length into bytes owned by someone else (a
 * received frame, a stored entry). Never NUL-terminated; copy it to keep it.
 */
#ifndef RP_PROTOCOL_STRV_H
#define RP_PROTOCOL_STRV_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct strv {
    const char *p;
    uint32_t len;
};

/* A view of a NUL-terminated C string (borrowed). */
static inline struct strv strv_c(const char *s)
{
    return (struct strv){s, (uint32_t)strlen(s)};
}

static inline bool strv_eq(struct strv a, struct strv b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* True iff the view holds exactly the C string s. */
static inline bool strv_eq_c(struct strv a, const char *s)
{
    return strv_eq(a, strv_c(s));
}

/* Byte-wise comparison, shorter prefix first: <0, 0, >0 like memcmp. */
static inline int strv_cmp(struct strv a, struct strv b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.p, b.p, n) : 0;
    if (c)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

#endif
