/*
 * fuzz_wire: libFuzzer target for everything a peer can send.
 *
 * The first input byte picks the parser, the rest is its input:
 *   0 a stream of frames    1 HELLO (and its facts)   2 DEFINE
 *   3 CALL (and its values) 4 RESULT (and its values) 5 ERROR
 *   6 OUTPUT                7 bare encoded values
 * Values are decoded on a fresh lua_State whose codec knows the
 * prototypes of fuzz_protos.h. Every parser must answer without crashing,
 * leaking or leaving the Lua stack unbalanced.
 */
#include "fuzz_protos.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The host side that knows the prototypes, made once (compiling the
 * chunks for every input would dominate the run): only the decoding side
 * is fresh for every input. */
static lua_State *g_host;
static wire_codec *g_host_codec;
static wire_hashes g_protos;

static void learn_prototypes_once(void)
{
    if (g_host)
        return;
    g_host = luaL_newstate();
    luaL_openlibs(g_host);
    g_host_codec = wire_codec_new(g_host, 0);
    for (int i = 0; fuzz_chunks[i]; i++) {
        sky_buf out = SKY_BUF_INIT;
        fuzz_encode_chunk(g_host, g_host_codec, i, &out, &g_protos);
        sky_buf_free(&out);
    }
}

static void decode_values(const uint8_t *p, size_t n)
{
    learn_prototypes_once();
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    wire_codec *c = wire_codec_new(L, WIRE_CODEC_ADOPT_METATABLES);   /* as a worker */
    for (size_t i = 0; i < g_protos.n; i++) {
        size_t len;
        const uint8_t *code = wire_codec_bytecode(g_host_codec, &g_protos.v[i], &len);
        wire_err derr;
        wire_codec_define(c, &g_protos.v[i], code, len, &derr);
    }
    wire_err err;
    int got = wire_decode(c, L, p, n, &err);
    if (got >= 0 ? lua_gettop(L) != got : lua_gettop(L) != 0)
        abort();
    if (got > 0) {
        /* Whatever decoded must encode again. */
        sky_buf out = SKY_BUF_INIT;
        wire_encode(c, L, 1, got, WIRE_ROOTS_RESULTS, &out, NULL, &err);
        sky_buf_free(&out);
    }
    wire_codec_free(c);
    lua_close(L);
}

static void parse_frames(const uint8_t *p, size_t n)
{
    sky_buf scratch = SKY_BUF_INIT;
    for (int i = 0; i < 64; i++) {
        wire_frame f;
        size_t used;
        wire_err err;
        if (wire_frame_next(p, n, &scratch, &f, &used, &err) != WIRE_OK)
            break;
        if (used > n || f.len > WIRE_MAX_BODY)
            abort();
        p += used;
        n -= used;
    }
    sky_buf_free(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    wire_err err;
    const uint8_t *v, *bytes;
    const char *msg, *tb;
    size_t vl, ml, tl;
    uint64_t id;
    double timeout;
    uint8_t kind;
    wire_hash h;
    switch (data[0] % 8) {
    case 0:
        parse_frames(p, n);
        break;
    case 1:
        if (wire_hello_parse(p, n, &v, &vl, &err) == WIRE_OK)
            decode_values(v, vl);
        break;
    case 2:
        wire_define_parse(p, n, &h, &v, &vl, &err);
        break;
    case 3:
        if (wire_call_parse(p, n, &id, &timeout, &v, &vl, &err) == WIRE_OK)
            decode_values(v, vl);
        break;
    case 4:
        if (wire_result_parse(p, n, &id, &v, &vl, &err) == WIRE_OK)
            decode_values(v, vl);
        break;
    case 5:
        wire_error_parse(p, n, &id, &kind, &msg, &ml, &tb, &tl, &err);
        break;
    case 6:
        wire_output_parse(p, n, &kind, &bytes, &vl, &err);
        break;
    default:
        decode_values(p, n);
        break;
    }
    return 0;
}
