/* buf: growable byte buffer (see buf.h). */
#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sky_buf_init(sky_buf *b) { b->data = NULL; b->len = b->cap = 0; }

void sky_buf_free(sky_buf *b)
{
    free(b->data);
    sky_buf_init(b);
}

void sky_buf_reset(sky_buf *b) { b->len = 0; }

int sky_buf_try_reserve(sky_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t need = b->len + extra, cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void sky_buf_reserve(sky_buf *b, size_t extra)
{
    if (sky_buf_try_reserve(b, extra) != 0)
        sky_oom("buffer");
}

void sky_buf_append(sky_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    sky_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void sky_buf_append_byte(sky_buf *b, uint8_t c)
{
    sky_buf_reserve(b, 1);
    b->data[b->len++] = c;
}

void sky_buf_append_str(sky_buf *b, const char *s) { sky_buf_append(b, s, strlen(s)); }

void sky_buf_printf(sky_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        sky_buf_append(b, small, (size_t)n);
        return;
    }
    sky_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sky_buf_append_u32le(sky_buf *b, uint32_t v)
{
    uint8_t p[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    sky_buf_append(b, p, 4);
}

void sky_buf_append_u64le(sky_buf *b, uint64_t v)
{
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    sky_buf_append(b, p, 8);
}

void sky_buf_append_varint(sky_buf *b, uint64_t v)
{
    uint8_t p[10];
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p[n++] = c | (v ? 0x80 : 0);
    } while (v);
    sky_buf_append(b, p, n);
}

void sky_buf_consume(sky_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

const char *sky_buf_cstr(sky_buf *b)
{
    sky_buf_reserve(b, 1);
    b->data[b->len] = 0;
    return (const char *)b->data;
}
