/*
 * test_wire_frame: the frame envelope and the message bodies. Frames
 * round-trip, large bodies are compressed only when that helps, and every
 * truncated, corrupted or lying input is answered AGAIN or EBAD, never a
 * crash or a huge allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static void a_small_frame_round_trips_uncompressed(void **state)
{
    (void)state;
    sky_buf out = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_CALL, "hello", 5);
    assert_int_equal(out.len, WIRE_HEADER_SIZE + 5);
    assert_int_equal(out.data[5], 0);
    wire_frame f;
    size_t used;
    wire_err err;
    assert_int_equal(wire_frame_next(out.data, out.len, &scratch, &f, &used, &err), WIRE_OK);
    assert_int_equal(f.type, WIRE_CALL);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.body, "hello", 5);
    assert_int_equal(used, out.len);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static void a_large_compressible_body_is_sent_compressed_and_round_trips(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)("abcdefgh"[i % 8]);
    sky_buf out = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_RESULT, body, n);
    assert_int_equal(out.data[5], WIRE_FLAG_LZ4);
    assert_true(out.len < n / 10);
    wire_frame f;
    size_t used;
    wire_err err;
    assert_int_equal(wire_frame_next(out.data, out.len, &scratch, &f, &used, &err), WIRE_OK);
    assert_int_equal(f.len, n);
    assert_memory_equal(f.body, body, n);
    free(body);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static void an_incompressible_body_is_sent_raw(void **state)
{
    (void)state;
    size_t n = 50000;
    uint8_t *body = malloc(n);
    fill_random(body, n, 7);
    sky_buf out = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_RESULT, body, n);
    assert_int_equal(out.data[5], 0);
    assert_int_equal(out.len, WIRE_HEADER_SIZE + n);
    free(body);
    sky_buf_free(&out);
}

static void frames_are_read_one_after_another_from_one_buffer(void **state)
{
    (void)state;
    sky_buf out = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_PING, NULL, 0);
    wire_frame_append(&out, WIRE_OUTPUT, "\1line\n", 6);
    wire_frame_append(&out, WIRE_BYE, NULL, 0);
    const uint8_t types[] = { WIRE_PING, WIRE_OUTPUT, WIRE_BYE };
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        wire_frame f;
        size_t used;
        wire_err err;
        assert_int_equal(wire_frame_next(out.data + off, out.len - off, &scratch, &f, &used, &err), WIRE_OK);
        assert_int_equal(f.type, types[i]);
        off += used;
    }
    assert_int_equal(off, out.len);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static void every_prefix_of_a_frame_asks_for_more(void **state)
{
    (void)state;
    size_t n = 10000;
    uint8_t *body = malloc(n);
    memset(body, 'z', n);
    sky_buf out = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_CALL, body, n);        /* compressed */
    size_t first = out.len;
    wire_frame_append(&out, WIRE_RESULT, "raw body", 8); /* raw */
    for (size_t len = 0; len < first; len++) {
        wire_frame f;
        size_t used;
        wire_err err;
        assert_int_equal(wire_frame_next(out.data, len, &scratch, &f, &used, &err), WIRE_AGAIN);
    }
    for (size_t len = first; len < out.len; len++) {
        wire_frame f;
        size_t used;
        wire_err err;
        assert_int_equal(wire_frame_next(out.data + first, len - first, &scratch, &f, &used, &err), WIRE_AGAIN);
    }
    free(body);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static int parse(const uint8_t *p, size_t n, sky_buf *scratch, wire_err *err)
{
    wire_frame f;
    size_t used;
    return wire_frame_next(p, n, scratch, &f, &used, err);
}

static void bad_headers_are_refused_with_what_was_wrong(void **state)
{
    (void)state;
    sky_buf scratch = SKY_BUF_INIT;
    wire_err err;
    const uint8_t too_big[] = { 0x01, 0x00, 0x00, 0x10, WIRE_CALL, 0 };   /* 256 MiB + 1 */
    assert_int_equal(parse(too_big, sizeof too_big, &scratch, &err), WIRE_EBAD);
    assert_string_equal(err.msg, "CALL frame body of 268435457 bytes exceeds the 268435456 byte limit");
    const uint8_t bad_type[] = { 0, 0, 0, 0, 0, 0 };
    assert_int_equal(parse(bad_type, sizeof bad_type, &scratch, &err), WIRE_EBAD);
    assert_string_equal(err.msg, "unknown frame type 0");
    const uint8_t bad_flags[] = { 0, 0, 0, 0, WIRE_PING, 0x80 };
    assert_int_equal(parse(bad_flags, sizeof bad_flags, &scratch, &err), WIRE_EBAD);
    assert_string_equal(err.msg, "PING frame has unknown flags 0x80");
    sky_buf_free(&scratch);
}

static void a_compressed_frame_that_lies_about_its_raw_length_is_refused_without_allocating(void **state)
{
    (void)state;
    sky_buf scratch = SKY_BUF_INIT;
    wire_err err;
    /* 256 MiB claimed from a 2-byte lz4 block: refused before any allocation. */
    const uint8_t bomb[] = { 6, 0, 0, 0, WIRE_RESULT, WIRE_FLAG_LZ4, 0, 0, 0, 0x10, 0x10, 0x00 };
    assert_int_equal(parse(bomb, sizeof bomb, &scratch, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "claims 268435456 raw bytes from only 2 compressed bytes"));
    assert_true(scratch.cap < 4096);
    /* Over the limit outright. */
    const uint8_t over[] = { 4, 0, 0, 0, WIRE_RESULT, WIRE_FLAG_LZ4, 1, 0, 0, 0x10 };
    assert_int_equal(parse(over, sizeof over, &scratch, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "more than the 268435456 byte limit"));
    /* No room for raw_len. */
    const uint8_t short_body[] = { 2, 0, 0, 0, WIRE_RESULT, WIRE_FLAG_LZ4, 1, 0 };
    assert_int_equal(parse(short_body, sizeof short_body, &scratch, &err), WIRE_EBAD);
    /* A real compressed frame whose raw_len is off by one either way. */
    uint8_t body[5000];
    memset(body, 'q', sizeof body);
    sky_buf out = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_CALL, body, sizeof body);
    out.data[6] += 1;
    assert_int_equal(parse(out.data, out.len, &scratch, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "corrupt"));
    out.data[6] -= 2;
    assert_int_equal(parse(out.data, out.len, &scratch, &err), WIRE_EBAD);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static void bit_flips_in_a_compressed_frame_never_crash(void **state)
{
    (void)state;
    uint8_t body[4000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i % 17 == 0 ? i : 'a');
    sky_buf out = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    wire_frame_append(&out, WIRE_RESULT, body, sizeof body);
    assert_int_equal(out.data[5], WIRE_FLAG_LZ4);
    uint8_t *copy = malloc(out.len);
    for (size_t i = 0; i < out.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, out.data, out.len);
            copy[i] ^= (uint8_t)(1u << bit);
            wire_err err;
            int rc = parse(copy, out.len, &scratch, &err);
            assert_true(rc == WIRE_OK || rc == WIRE_AGAIN || rc == WIRE_EBAD);
        }
    }
    free(copy);
    sky_buf_free(&out);
    sky_buf_free(&scratch);
}

static void varints_refuse_overlong_and_overflowing_encodings(void **state)
{
    (void)state;
    uint64_t v;
    const uint8_t max[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    wire_reader r = { max, max + sizeof max };
    assert_int_equal(wire_read_varint(&r, &v), WIRE_OK);
    assert_true(v == UINT64_MAX);
    const uint8_t overflow[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
    r = (wire_reader){ overflow, overflow + sizeof overflow };
    assert_int_equal(wire_read_varint(&r, &v), WIRE_EBAD);
    const uint8_t endless[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
    r = (wire_reader){ endless, endless + sizeof endless };
    assert_int_equal(wire_read_varint(&r, &v), WIRE_EBAD);
    const uint8_t cut[] = { 0x80 };
    r = (wire_reader){ cut, cut + 1 };
    assert_int_equal(wire_read_varint(&r, &v), WIRE_EBAD);
}

/* ---- messages ---------------------------------------------------------------- */

static void hello_round_trips_and_a_version_mismatch_names_both_sides(void **state)
{
    (void)state;
    sky_buf b = SKY_BUF_INIT;
    wire_err err;
    const uint8_t *facts;
    size_t facts_len;
    wire_hello_append(&b, (const uint8_t *)"FACTS", 5);
    assert_int_equal(wire_hello_parse(b.data, b.len, &facts, &facts_len, &err), WIRE_OK);
    assert_int_equal(facts_len, 5);
    assert_memory_equal(facts, "FACTS", 5);
    /* A worker from elsewhere: protocol 99, Lua 5.3. */
    b.data[8] = 99;
    b.data[12] = (uint8_t)(503 & 0xff);
    b.data[13] = (uint8_t)(503 >> 8);
    assert_int_equal(wire_hello_parse(b.data, b.len, &facts, &facts_len, &err), WIRE_EBAD);
    char want[128];
    snprintf(want, sizeof want, "worker speaks protocol 99 with Lua 5.3, host speaks protocol %u with Lua %d.%d",
             WIRE_PROTOCOL_VERSION, LUA_VERSION_NUM / 100, LUA_VERSION_NUM % 100);
    assert_string_equal(err.msg, want);
    b.data[0] = 'X';
    assert_int_equal(wire_hello_parse(b.data, b.len, &facts, &facts_len, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "magic"));
    for (size_t len = 0; len < 16; len++)
        assert_int_equal(wire_hello_parse(b.data, len, &facts, &facts_len, &err), WIRE_EBAD);
    sky_buf_free(&b);
}

static void call_result_and_define_round_trip_and_refuse_truncation(void **state)
{
    (void)state;
    sky_buf b = SKY_BUF_INIT;
    wire_err err;
    uint64_t id;
    double timeout;
    const uint8_t *v;
    size_t vl;
    wire_call_header(&b, 12345678901ull, 2.5);
    sky_buf_append(&b, "\x00", 1);
    assert_int_equal(wire_call_parse(b.data, b.len, &id, &timeout, &v, &vl, &err), WIRE_OK);
    assert_true(id == 12345678901ull && timeout == 2.5 && vl == 1);
    for (size_t len = 0; len < b.len; len++)
        assert_int_equal(wire_call_parse(b.data, len, &id, &timeout, &v, &vl, &err), WIRE_EBAD);
    sky_buf_reset(&b);
    wire_call_header(&b, 1, -1.0);
    sky_buf_append(&b, "\x00", 1);
    assert_int_equal(wire_call_parse(b.data, b.len, &id, &timeout, &v, &vl, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "invalid timeout"));

    sky_buf_reset(&b);
    wire_result_header(&b, 99);
    assert_int_equal(wire_result_parse(b.data, b.len, &id, &v, &vl, &err), WIRE_OK);
    assert_true(id == 99 && vl == 0);
    for (size_t len = 0; len < b.len; len++)
        assert_int_equal(wire_result_parse(b.data, len, &id, &v, &vl, &err), WIRE_EBAD);

    sky_buf_reset(&b);
    wire_hash h, h2;
    wire_hash_bytes("code", 4, &h);
    wire_define_append(&b, &h, (const uint8_t *)"code", 4);
    const uint8_t *code;
    size_t code_len;
    assert_int_equal(wire_define_parse(b.data, b.len, &h2, &code, &code_len, &err), WIRE_OK);
    assert_memory_equal(h.b, h2.b, 16);
    assert_int_equal(code_len, 4);
    for (size_t len = 0; len <= 16; len++)
        assert_int_equal(wire_define_parse(b.data, len, &h2, &code, &code_len, &err), WIRE_EBAD);
    sky_buf_free(&b);
}

static void error_and_output_round_trip_and_refuse_truncation(void **state)
{
    (void)state;
    sky_buf b = SKY_BUF_INIT;
    wire_err err;
    uint64_t id;
    uint8_t kind;
    const char *msg, *tb;
    size_t ml, tl;
    wire_error_append(&b, 5, WIRE_ERR_TIMEOUT, "late", 4, "tb\0x", 4);
    assert_int_equal(wire_error_parse(b.data, b.len, &id, &kind, &msg, &ml, &tb, &tl, &err), WIRE_OK);
    assert_true(id == 5 && kind == WIRE_ERR_TIMEOUT && ml == 4 && tl == 4);
    assert_memory_equal(tb, "tb\0x", 4);
    for (size_t len = 0; len < b.len; len++)
        assert_int_equal(wire_error_parse(b.data, len, &id, &kind, &msg, &ml, &tb, &tl, &err), WIRE_EBAD);
    sky_buf_append_byte(&b, 0);
    assert_int_equal(wire_error_parse(b.data, b.len, &id, &kind, &msg, &ml, &tb, &tl, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "trailing"));
    b.len--;
    b.data[8] = 9;
    assert_int_equal(wire_error_parse(b.data, b.len, &id, &kind, &msg, &ml, &tb, &tl, &err), WIRE_EBAD);
    assert_non_null(strstr(err.msg, "unknown kind 9"));

    sky_buf_reset(&b);
    uint8_t stream;
    const uint8_t *bytes;
    size_t n;
    wire_output_append(&b, 2, "line\n", 5);
    assert_int_equal(wire_output_parse(b.data, b.len, &stream, &bytes, &n, &err), WIRE_OK);
    assert_true(stream == 2 && n == 5);
    assert_int_equal(wire_output_parse(b.data, 0, &stream, &bytes, &n, &err), WIRE_EBAD);
    b.data[0] = 3;
    assert_int_equal(wire_output_parse(b.data, b.len, &stream, &bytes, &n, &err), WIRE_EBAD);
    sky_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_small_frame_round_trips_uncompressed),
        cmocka_unit_test(a_large_compressible_body_is_sent_compressed_and_round_trips),
        cmocka_unit_test(an_incompressible_body_is_sent_raw),
        cmocka_unit_test(frames_are_read_one_after_another_from_one_buffer),
        cmocka_unit_test(every_prefix_of_a_frame_asks_for_more),
        cmocka_unit_test(bad_headers_are_refused_with_what_was_wrong),
        cmocka_unit_test(a_compressed_frame_that_lies_about_its_raw_length_is_refused_without_allocating),
        cmocka_unit_test(bit_flips_in_a_compressed_frame_never_crash),
        cmocka_unit_test(varints_refuse_overlong_and_overflowing_encodings),
        cmocka_unit_test(hello_round_trips_and_a_version_mismatch_names_both_sides),
        cmocka_unit_test(call_result_and_define_round_trip_and_refuse_truncation),
        cmocka_unit_test(error_and_output_round_trip_and_refuse_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
