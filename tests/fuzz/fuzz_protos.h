/*
 * fuzz_protos: closures whose prototypes both the fuzz target and the seed
 * generator know, so that seeds (and mutations of them) reach the closure
 * decoding paths instead of stopping at "unknown function prototype".
 */
#ifndef SKY_FUZZ_PROTOS_H
#define SKY_FUZZ_PROTOS_H

#include <lauxlib.h>
#include <lualib.h>
#include "wire/wire.h"

/* Each chunk returns values to encode; functions among them are the
 * prototypes the target knows. */
static const char *const fuzz_chunks[] = {
    "return 1, -2, 3.5, 'str\\0', true, false, nil",
    "local t = { 1, 2, x = { y = 'z' }, [true] = 1.5 } t.self = t return t, t",
    "local fmt = string.format return function(x) return fmt('%d', x) end",
    "local function fib(n) if n < 2 then return n end return fib(n-1) + fib(n-2) end return fib",
    "local k, t = 10, { 1 } return function(x) return x + k + #t, _G, math end",
    "local a, b function a(n) return n == 0 or b(n - 1) end function b(n) return n ~= 0 and a(n - 1) end return a",
    "return io.stdout, print, string, table.concat",
    /* fuzz_mt is registered as a metatable before encoding (below) */
    "fuzz_mt = { __index = { first = function(s) return s[1] end } }\n"
    "local a = setmetatable({ 7 }, fuzz_mt) return a, setmetatable({ a }, fuzz_mt)",
    NULL,
};

/* Encodes chunk i on L with codec c into out (values only). */
static inline int fuzz_encode_chunk(lua_State *L, wire_codec *c, int i, sky_buf *out, wire_hashes *protos)
{
    wire_err err;
    int top = lua_gettop(L);
    if (luaL_dostring(L, fuzz_chunks[i]) != LUA_OK)
        return -1;
    int n = lua_gettop(L) - top;
    if (lua_getglobal(L, "fuzz_mt") == LUA_TTABLE)
        wire_codec_register_metatable(c, L, "fuzz_mt", -1, &err);
    lua_pop(L, 1);
    int rc = wire_encode(c, L, top + 1, n, WIRE_ROOTS_VALUES, out, protos, &err);
    lua_settop(L, top);
    return rc;
}

#endif
