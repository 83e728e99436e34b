/* UTF-8 validation (RFC 3629). */
#include "protocol/utf8.h"

#include <stdint.h>

bool utf8_valid(const void *data, size_t len)
{
    const unsigned char *p = data, *e = p + len;
    while (p < e) {
        unsigned c = *p++;
        if (c < 0x80)
            continue;
        unsigned n, min;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0)
            n = 1, min = 0x80, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            n = 2, min = 0x800, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            n = 3, min = 0x10000, cp = c & 0x07;
        else
            return false;
        if ((size_t)(e - p) < n)
            return false;
        for (unsigned i = 0; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        p += n;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}
