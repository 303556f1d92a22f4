/*
 * buf: a growable byte buffer, the one way bytes are accumulated in skyrun
 * (frames, encoded values, HTTP bodies, log lines). Depends on libc only, so
 * the worker links it too.
 *
 * Growing a buffer is bookkeeping: allocation failure aborts through
 * sky_oom() (util/alloc.h, the host's one out-of-memory policy). A buffer
 * whose size a user chooses (an object read into memory) grows with
 * sky_buf_try_reserve instead, and its caller reports the failure.
 */
#ifndef SKY_UTIL_BUF_H
#define SKY_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/alloc.h"

typedef struct sky_buf {
    uint8_t *data;   /* NULL while empty and never grown */
    size_t len;      /* bytes in use */
    size_t cap;      /* bytes allocated */
} sky_buf;

#define SKY_BUF_INIT { NULL, 0, 0 }

void sky_buf_init(sky_buf *b);
void sky_buf_free(sky_buf *b);                 /* releases memory; b is empty after */
void sky_buf_reset(sky_buf *b);                /* len = 0, keeps capacity */
void sky_buf_reserve(sky_buf *b, size_t extra); /* room for `extra` more bytes */
/* The same, for user-sized data: 0, or -1 (b unchanged) when the memory
 * cannot be had. */
int sky_buf_try_reserve(sky_buf *b, size_t extra);
void sky_buf_append(sky_buf *b, const void *p, size_t n);
void sky_buf_append_byte(sky_buf *b, uint8_t c);
void sky_buf_append_str(sky_buf *b, const char *s);
void sky_buf_printf(sky_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sky_buf_append_u32le(sky_buf *b, uint32_t v);
void sky_buf_append_u64le(sky_buf *b, uint64_t v);
void sky_buf_append_varint(sky_buf *b, uint64_t v); /* LEB128, 1..10 bytes */
void sky_buf_consume(sky_buf *b, size_t n);   /* drop the first n bytes */
const char *sky_buf_cstr(sky_buf *b);         /* NUL-terminated view (not counted in len) */

#endif
