/*
 * frame: the outer envelope of every message between host and worker
 * (u32 body_len | u8 type | u8 flags | body), lz4 compression of large
 * bodies, and the bounds-checked reader that every parser uses.
 *
 * wire_frame_next is total: whatever the bytes, it answers OK, AGAIN or
 * EBAD with a message, never reads outside its input and never allocates
 * more than the frame can honestly expand to.
 */
#include "wire/wire.h"
#include "wire/wire_internal.h"

#include <lz4.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lz4 cannot expand a block by more than this factor (one literal-run token
 * byte per 255 bytes of a match); a raw_len beyond it is a lie. */
#define LZ4_MAX_RATIO 255u

static uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void store_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void wire_set_err(wire_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

const char *wire_type_name(uint8_t type)
{
    static const char *const names[] = { NULL, "HELLO", "SETUP", "DEFINE", "CALL", "RESULT",
                                         "ERROR", "OUTPUT", "PING", "BYE", "PONG", "CANCEL",
                                         "CANCELLED" };
    if (type >= 1 && type <= WIRE_LAST_TYPE)
        return names[type];
    return NULL;
}

static void append_header(sky_buf *out, uint32_t body_len, uint8_t type, uint8_t flags)
{
    uint8_t h[WIRE_HEADER_SIZE];
    store_u32le(h, body_len);
    h[4] = type;
    h[5] = flags;
    sky_buf_append(out, h, sizeof h);
}

/* Writes header + u32 raw_len + lz4 block straight into out when that is
 * shorter than the raw body; returns 0 (and leaves out untouched) otherwise. */
static int append_compressed(sky_buf *out, uint8_t type, const void *body, size_t len)
{
    int bound = LZ4_compressBound((int)len);
    if (bound <= 0)
        return 0;
    size_t start = out->len;
    sky_buf_reserve(out, WIRE_HEADER_SIZE + 4 + (size_t)bound);
    uint8_t *dst = out->data + start + WIRE_HEADER_SIZE + 4;
    /* Only worth it if it saves something: cap the output below the raw size. */
    int room = (int)(len - 4 - 1);
    int n = LZ4_compress_default(body, (char *)dst, (int)len, room < bound ? room : bound);
    if (n <= 0)
        return 0;
    uint8_t *h = out->data + start;
    store_u32le(h, (uint32_t)n + 4);
    h[4] = type;
    h[5] = WIRE_FLAG_LZ4;
    store_u32le(h + WIRE_HEADER_SIZE, (uint32_t)len);
    out->len = start + WIRE_HEADER_SIZE + 4 + (size_t)n;
    return 1;
}

void wire_frame_append(sky_buf *out, uint8_t type, const void *body, size_t len)
{
    /* A caller that builds a larger body has a bug; sending it would make
     * the peer drop the connection, so stop here where it is visible. */
    if (len > WIRE_MAX_BODY) {
        fprintf(stderr, "skyrun: internal error: a %s frame body of %zu bytes (the limit is %u)\n",
                wire_type_name(type) ? wire_type_name(type) : "?", len, WIRE_MAX_BODY);
        abort();
    }
    if (len >= WIRE_COMPRESS_THRESHOLD && append_compressed(out, type, body, len))
        return;
    append_header(out, (uint32_t)len, type, 0);
    sky_buf_append(out, body, len);
}

static int decompress_body(const uint8_t *body, uint32_t body_len, sky_buf *scratch,
                           wire_frame *f, wire_err *err)
{
    if (body_len < 4) {
        wire_set_err(err, "compressed %s frame of %u bytes has no room for its raw length",
                wire_type_name(f->type), body_len);
        return WIRE_EBAD;
    }
    uint32_t raw_len = load_u32le(body), packed = body_len - 4;
    if (raw_len > WIRE_MAX_BODY) {
        wire_set_err(err, "compressed %s frame claims %u raw bytes, more than the %u byte limit",
                wire_type_name(f->type), raw_len, WIRE_MAX_BODY);
        return WIRE_EBAD;
    }
    if ((uint64_t)raw_len > (uint64_t)packed * LZ4_MAX_RATIO + 16) {
        wire_set_err(err, "compressed %s frame claims %u raw bytes from only %u compressed bytes",
                wire_type_name(f->type), raw_len, packed);
        return WIRE_EBAD;
    }
    sky_buf_reset(scratch);
    sky_buf_reserve(scratch, raw_len ? raw_len : 1);
    int n = LZ4_decompress_safe((const char *)body + 4, (char *)scratch->data, (int)packed,
                                (int)raw_len);
    if (n < 0 || (uint32_t)n != raw_len) {
        wire_set_err(err, "compressed %s frame is corrupt (lz4 block does not expand to %u bytes)",
                wire_type_name(f->type), raw_len);
        return WIRE_EBAD;
    }
    scratch->len = raw_len;
    f->body = scratch->data;
    f->len = raw_len;
    return WIRE_OK;
}

int wire_frame_next(const uint8_t *data, size_t len, sky_buf *scratch, wire_frame *f,
                    size_t *consumed, wire_err *err)
{
    if (len < WIRE_HEADER_SIZE)
        return WIRE_AGAIN;
    uint32_t body_len = load_u32le(data);
    uint8_t type = data[4], flags = data[5];
    if (!wire_type_name(type)) {
        wire_set_err(err, "unknown frame type %u", type);
        return WIRE_EBAD;
    }
    if (flags & ~WIRE_FLAG_LZ4) {
        wire_set_err(err, "%s frame has unknown flags 0x%02x", wire_type_name(type), flags);
        return WIRE_EBAD;
    }
    if (body_len > WIRE_MAX_BODY) {
        wire_set_err(err, "%s frame body of %u bytes exceeds the %u byte limit", wire_type_name(type),
                body_len, WIRE_MAX_BODY);
        return WIRE_EBAD;
    }
    if (len - WIRE_HEADER_SIZE < body_len)
        return WIRE_AGAIN;
    f->type = type;
    if (flags & WIRE_FLAG_LZ4) {
        int rc = decompress_body(data + WIRE_HEADER_SIZE, body_len, scratch, f, err);
        if (rc != WIRE_OK)
            return rc;
    } else {
        f->body = data + WIRE_HEADER_SIZE;
        f->len = body_len;
    }
    *consumed = WIRE_HEADER_SIZE + (size_t)body_len;
    return WIRE_OK;
}

/* ---- reader ---------------------------------------------------------------- */

int wire_read_bytes(wire_reader *r, size_t n, const uint8_t **p)
{
    if ((size_t)(r->end - r->p) < n)
        return WIRE_EBAD;
    *p = r->p;
    r->p += n;
    return WIRE_OK;
}

int wire_read_u8(wire_reader *r, uint8_t *v)
{
    if (r->p >= r->end)
        return WIRE_EBAD;
    *v = *r->p++;
    return WIRE_OK;
}

int wire_read_u32(wire_reader *r, uint32_t *v)
{
    const uint8_t *p;
    if (wire_read_bytes(r, 4, &p) != WIRE_OK)
        return WIRE_EBAD;
    *v = load_u32le(p);
    return WIRE_OK;
}

int wire_read_u64(wire_reader *r, uint64_t *v)
{
    const uint8_t *p;
    if (wire_read_bytes(r, 8, &p) != WIRE_OK)
        return WIRE_EBAD;
    *v = (uint64_t)load_u32le(p) | (uint64_t)load_u32le(p + 4) << 32;
    return WIRE_OK;
}

int wire_read_f64(wire_reader *r, double *v)
{
    uint64_t bits;
    if (wire_read_u64(r, &bits) != WIRE_OK)
        return WIRE_EBAD;
    memcpy(v, &bits, sizeof *v);
    return WIRE_OK;
}

/* LEB128 as sky_buf_append_varint writes it; refuses encodings longer than
 * ten bytes or with bits beyond 64. */
int wire_read_varint(wire_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        uint8_t b;
        if (wire_read_u8(r, &b) != WIRE_OK)
            return WIRE_EBAD;
        if (shift == 63 && (b & 0x7e))
            return WIRE_EBAD;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return WIRE_OK;
        }
    }
    return WIRE_EBAD;
}

void wire_append_f64(sky_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    sky_buf_append_u64le(b, bits);
}
