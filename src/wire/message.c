/*
 * message: the bodies of the protocol messages (HELLO, DEFINE, CALL,
 * RESULT, ERROR, OUTPUT; SETUP is a bare encoded table, PING and BYE have
 * no body). Builders append to a sky_buf; parsers are total and point into
 * the body they were given.
 */
#include "wire/wire.h"
#include "wire/wire_internal.h"

#include <lua.h>
#include <math.h>
#include <string.h>

#define HELLO_FIXED (8u + 4u + 4u)

void wire_hello_append(sky_buf *body, const uint8_t *facts, size_t facts_len)
{
    sky_buf_append(body, WIRE_MAGIC, 8);
    sky_buf_append_u32le(body, WIRE_PROTOCOL_VERSION);
    sky_buf_append_u32le(body, LUA_VERSION_NUM);
    sky_buf_append(body, facts, facts_len);
}

int wire_hello_parse(const uint8_t *p, size_t len, const uint8_t **facts, size_t *facts_len,
                     wire_err *err)
{
    wire_reader r = { p, p + len };
    const uint8_t *magic;
    uint32_t proto, lua;
    if (wire_read_bytes(&r, 8, &magic) != WIRE_OK || memcmp(magic, WIRE_MAGIC, 8) != 0) {
        wire_set_err(err, "the peer is not a skyrun worker (HELLO does not start with the skyrun magic)");
        return WIRE_EBAD;
    }
    if (wire_read_u32(&r, &proto) != WIRE_OK || wire_read_u32(&r, &lua) != WIRE_OK) {
        wire_set_err(err, "HELLO of %zu bytes is too short for its versions", len);
        return WIRE_EBAD;
    }
    if (proto != WIRE_PROTOCOL_VERSION || lua != LUA_VERSION_NUM) {
        wire_set_err(err, "worker speaks protocol %u with Lua %u.%u, host speaks protocol %u with Lua %u.%u",
                     proto, lua / 100, lua % 100, WIRE_PROTOCOL_VERSION,
                     LUA_VERSION_NUM / 100, LUA_VERSION_NUM % 100);
        return WIRE_EBAD;
    }
    *facts = r.p;
    *facts_len = (size_t)(r.end - r.p);
    return WIRE_OK;
}

void wire_define_append(sky_buf *body, const wire_hash *h, const uint8_t *code, size_t len)
{
    sky_buf_append(body, h->b, sizeof h->b);
    sky_buf_append(body, code, len);
}

int wire_define_parse(const uint8_t *p, size_t len, wire_hash *h, const uint8_t **code,
                      size_t *code_len, wire_err *err)
{
    if (len <= sizeof h->b) {
        wire_set_err(err, "DEFINE of %zu bytes has no bytecode after its 16-byte hash", len);
        return WIRE_EBAD;
    }
    memcpy(h->b, p, sizeof h->b);
    *code = p + sizeof h->b;
    *code_len = len - sizeof h->b;
    return WIRE_OK;
}

void wire_call_header(sky_buf *body, uint64_t id, double timeout)
{
    sky_buf_append_u64le(body, id);
    wire_append_f64(body, timeout);
}

int wire_call_parse(const uint8_t *p, size_t len, uint64_t *id, double *timeout,
                    const uint8_t **values, size_t *values_len, wire_err *err)
{
    wire_reader r = { p, p + len };
    if (wire_read_u64(&r, id) != WIRE_OK || wire_read_f64(&r, timeout) != WIRE_OK) {
        wire_set_err(err, "CALL of %zu bytes is too short for its id and timeout", len);
        return WIRE_EBAD;
    }
    if (!isfinite(*timeout) || *timeout < 0) {
        wire_set_err(err, "CALL %llu has an invalid timeout (%g s)", (unsigned long long)*id, *timeout);
        return WIRE_EBAD;
    }
    if (r.p == r.end) {
        wire_set_err(err, "CALL %llu carries no function", (unsigned long long)*id);
        return WIRE_EBAD;
    }
    *values = r.p;
    *values_len = (size_t)(r.end - r.p);
    return WIRE_OK;
}

void wire_result_header(sky_buf *body, uint64_t id) { sky_buf_append_u64le(body, id); }

int wire_result_parse(const uint8_t *p, size_t len, uint64_t *id, const uint8_t **values,
                      size_t *values_len, wire_err *err)
{
    wire_reader r = { p, p + len };
    if (wire_read_u64(&r, id) != WIRE_OK) {
        wire_set_err(err, "RESULT of %zu bytes is too short for its id", len);
        return WIRE_EBAD;
    }
    *values = r.p;
    *values_len = (size_t)(r.end - r.p);
    return WIRE_OK;
}

void wire_error_append(sky_buf *body, uint64_t id, uint8_t kind, const char *msg, size_t msg_len,
                       const char *traceback, size_t tb_len)
{
    sky_buf_append_u64le(body, id);
    sky_buf_append_byte(body, kind);
    sky_buf_append_varint(body, msg_len);
    sky_buf_append(body, msg, msg_len);
    sky_buf_append_varint(body, tb_len);
    sky_buf_append(body, traceback, tb_len);
}

/* A varint length followed by that many bytes. */
static int read_counted(wire_reader *r, const char **s, size_t *n)
{
    uint64_t len;
    const uint8_t *p;
    if (wire_read_varint(r, &len) != WIRE_OK || len > (uint64_t)(r->end - r->p) ||
        wire_read_bytes(r, (size_t)len, &p) != WIRE_OK)
        return WIRE_EBAD;
    *s = (const char *)p;
    *n = (size_t)len;
    return WIRE_OK;
}

int wire_error_parse(const uint8_t *p, size_t len, uint64_t *id, uint8_t *kind, const char **msg,
                     size_t *msg_len, const char **tb, size_t *tb_len, wire_err *err)
{
    wire_reader r = { p, p + len };
    if (wire_read_u64(&r, id) != WIRE_OK || wire_read_u8(&r, kind) != WIRE_OK) {
        wire_set_err(err, "ERROR of %zu bytes is too short for its id and kind", len);
        return WIRE_EBAD;
    }
    if (*kind < WIRE_ERR_USER || *kind > WIRE_ERR_DECODE) {
        wire_set_err(err, "ERROR for call %llu has unknown kind %u", (unsigned long long)*id, *kind);
        return WIRE_EBAD;
    }
    if (read_counted(&r, msg, msg_len) != WIRE_OK) {
        wire_set_err(err, "ERROR for call %llu has a truncated message", (unsigned long long)*id);
        return WIRE_EBAD;
    }
    if (read_counted(&r, tb, tb_len) != WIRE_OK) {
        wire_set_err(err, "ERROR for call %llu has a truncated traceback", (unsigned long long)*id);
        return WIRE_EBAD;
    }
    if (r.p != r.end) {
        wire_set_err(err, "ERROR for call %llu has %zu unexpected trailing bytes",
                     (unsigned long long)*id, (size_t)(r.end - r.p));
        return WIRE_EBAD;
    }
    return WIRE_OK;
}

void wire_output_append(sky_buf *body, uint8_t stream, const void *bytes, size_t len)
{
    sky_buf_append_byte(body, stream);
    sky_buf_append(body, bytes, len);
}

int wire_output_parse(const uint8_t *p, size_t len, uint8_t *stream, const uint8_t **bytes,
                      size_t *n, wire_err *err)
{
    if (len < 1) {
        wire_set_err(err, "OUTPUT has no stream byte");
        return WIRE_EBAD;
    }
    if (p[0] != 1 && p[0] != 2) {
        wire_set_err(err, "OUTPUT names unknown stream %u (expected 1 or 2)", p[0]);
        return WIRE_EBAD;
    }
    *stream = p[0];
    *bytes = p + 1;
    *n = len - 1;
    return WIRE_OK;
}

void wire_id_append(sky_buf *body, uint64_t id) { sky_buf_append_u64le(body, id); }

int wire_id_parse(const uint8_t *p, size_t len, uint64_t *id, wire_err *err)
{
    wire_reader r = { p, p + len };
    if (len != 8 || wire_read_u64(&r, id) != WIRE_OK) {
        wire_set_err(err, "a CANCEL or CANCELLED body is 8 bytes, not %zu", len);
        return WIRE_EBAD;
    }
    return WIRE_OK;
}
