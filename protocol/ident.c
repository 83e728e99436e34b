/*
 * Identifier rules. The id character set is a 256-entry table so that
 * checking an id is one load per byte.
 */
#include "protocol/ident.h"

#include <string.h>

/* [A-Za-z0-9_.@-] */
static const bool id_char[256] = {
    ['-'] = 1, ['.'] = 1, ['@'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static bool charset_ok(struct strv id, uint32_t max)
{
    if (id.len == 0 || id.len > max || !id.p)
        return false;
    for (uint32_t i = 0; i < id.len; i++)
        if (!id_char[(unsigned char)id.p[i]])
            return false;
    return true;
}

bool ident_user_ok(struct strv id)
{
    return charset_ok(id, IDENT_USER_MAX);
}

bool ident_device_ok(struct strv id)
{
    return charset_ok(id, IDENT_DEVICE_MAX);
}

enum conv_kind ident_conv_parse(struct strv conv, struct strv *a, struct strv *b)
{
    if (conv.len < 3 || conv.p[1] != ':')
        return CONV_BAD;
    struct strv rest = {conv.p + 2, conv.len - 2};
    if (conv.p[0] == 'g') {
        if (!ident_user_ok(rest))
            return CONV_BAD;
        if (a)
            *a = rest;
        if (b)
            *b = (struct strv){rest.p + rest.len, 0};
        return CONV_GROUP;
    }
    if (conv.p[0] != 'd')
        return CONV_BAD;
    const char *colon = memchr(rest.p, ':', rest.len);
    if (!colon)
        return CONV_BAD;
    struct strv x = {rest.p, (uint32_t)(colon - rest.p)};
    struct strv y = {colon + 1, rest.len - x.len - 1};
    if (!ident_user_ok(x) || !ident_user_ok(y) || strv_cmp(x, y) > 0)
        return CONV_BAD;
    if (a)
        *a = x;
    if (b)
        *b = y;
    return CONV_DIRECT;
}

static uint32_t put(char *out, uint32_t at, struct strv s)
{
    if (s.len)
        memcpy(out + at, s.p, s.len);
    return at + s.len;
}

uint32_t ident_conv_direct(char *out, struct strv x, struct strv y)
{
    if (strv_cmp(x, y) > 0) {
        struct strv t = x;
        x = y;
        y = t;
    }
    uint32_t n = put(out, 0, strv_c("d:"));
    n = put(out, n, x);
    n = put(out, n, strv_c(":"));
    return put(out, n, y);
}

uint32_t ident_conv_group(char *out, struct strv gid)
{
    return put(out, put(out, 0, strv_c("g:")), gid);
}
