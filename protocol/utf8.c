/* UTF-8 validation (RFC 3629). */
#include "protocol/utf8.h"

#include <stdint.h>

size_t utf8_seq(const void *data, size_t len)
{
    const unsigned char *p = data;
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    unsigned n, min;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0)
        n = 1, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 2, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 3, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len - 1 < n)
        return 0;
    for (unsigned i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

bool utf8_valid(const void *data, size_t len)
{
    const unsigned char *p = data, *e = p + len;
    while (p < e) {
        if (*p < 0x80) { /* the common case, without a call */
            p++;
            continue;
        }
        size_t n = utf8_seq(p, (size_t)(e - p));
        if (!n)
            return false;
        p += n;
    }
    return true;
}
