#include "core/utf8.h"

#include <stdlib.h>
#include <string.h>

size_t utf8_sequence_length(const unsigned char *s, size_t len)
{
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned char min = 0x80, max = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            min = 0xA0; /* overlong */
        else if (c == 0xED)
            max = 0x9F; /* surrogates U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            min = 0x90; /* overlong */
        else if (c == 0xF4)
            max = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* continuation byte, overlong lead (C0, C1) or F5..FF */
    }
    if (len < need || s[1] < min || s[1] > max)
        return 0;
    for (size_t i = 2; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return need;
}

bool utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    while (len > 0) {
        size_t n = utf8_sequence_length(p, len);
        if (n == 0)
            return false;
        p += n;
        len -= n;
    }
    return true;
}

void utf8_trim_partial(char *s)
{
    size_t len = strlen(s);
    /* A character is at most 4 bytes: only the last 3 can start a cut one. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back for the lead */
        if (c >= 0xC0 && utf8_sequence_length((const unsigned char *)s + len - back, back) == 0)
            s[len - back] = '\0';
        return;
    }
}

char *utf8_sanitize(const char *s)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    size_t len = strlen(s);
    char *out = malloc(len * 3 + 1); /* worst case: every byte replaced */
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (len > 0) {
        size_t n = utf8_sequence_length(p, len);
        if (n == 0) {
            memcpy(out + o, replacement, 3);
            o += 3;
            n = 1;
        } else {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        len -= n;
    }
    out[o] = '\0';
    return out;
}
