/* encode: hex and percent-encoding (see encode.h). */
#include "util/encode.h"

#include <stdint.h>

void sky_hex(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

void sky_buf_append_percent(sky_buf *out, const char *s, size_t n, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            sky_buf_append_byte(out, c);
        } else {
            uint8_t esc[3] = { '%', (uint8_t)digits[c >> 4], (uint8_t)digits[c & 15] };
            sky_buf_append(out, esc, 3);
        }
    }
}
