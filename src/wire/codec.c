/*
 * codec: the per-lua_State memory of the value codec.
 *
 *  - names: standard-library values (base functions, the library tables
 *    and their fields, io.stdout…) and the `sky` module, by value, so the
 *    encoder can send them as names that the receiver resolves through its
 *    own package.loaded;
 *  - a weak-keyed cache closure -> hash, so a closure sent many times is
 *    dumped once;
 *  - the prototype store hash -> bytecode (host: what it encoded; worker:
 *    what was DEFINEd to it), the only source of bytecode the decoder loads;
 *  - a cache of loaded "pure" closures (upvalues only globals and names);
 *  - registered metatables by name and the names of metatables (those
 *    registered here and, on workers, the copies that came with values).
 *
 * All of it lives in Lua tables anchored in the registry, so the garbage
 * collector and the Lua allocator own the memory.
 */
#include "util/alloc.h"
#include "wire/wire.h"
#include "wire/wire_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* Libraries whose values are sent by name (package.loaded keys). */
static const char *const library_names[] = { "string", "table", "math", "utf8", "os", "io",
                                             "coroutine", "debug", "package", NULL };

/* names[value] = name unless the value already has one (the first name wins,
 * so `string` stays "string" rather than a later alias). */
static void name_value(lua_State *L, int names_idx, int value_idx, const char *name)
{
    lua_pushvalue(L, value_idx);
    if (lua_rawget(L, names_idx) == LUA_TNIL) {
        lua_pushvalue(L, value_idx);
        lua_pushstring(L, name);
        lua_rawset(L, names_idx);
    }
    lua_pop(L, 1);
}

static int is_nameable(int type)
{
    return type == LUA_TFUNCTION || type == LUA_TTABLE || type == LUA_TUSERDATA;
}

/* Names the table at tbl_idx as `prefix` and each of its functions, tables
 * and userdata fields as "prefix.field". */
static void name_library(lua_State *L, int names_idx, int tbl_idx, const char *prefix)
{
    name_value(L, names_idx, tbl_idx, prefix);
    lua_pushnil(L);
    while (lua_next(L, tbl_idx)) {
        if (lua_type(L, -2) == LUA_TSTRING && is_nameable(lua_type(L, -1))) {
            lua_pushfstring(L, "%s.%s", prefix, lua_tostring(L, -2));
            name_value(L, names_idx, lua_gettop(L) - 1, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* Base functions: every C function stored in _G under a string key. */
static void name_base_functions(lua_State *L, int names_idx)
{
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, g)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1))
            name_value(L, names_idx, lua_gettop(L), lua_tostring(L, -2));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void name_standard_libraries(lua_State *L, int names_idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    int loaded = lua_gettop(L);
    for (int i = 0; library_names[i]; i++) {
        if (lua_getfield(L, loaded, library_names[i]) == LUA_TTABLE)
            name_library(L, names_idx, lua_gettop(L), library_names[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    name_base_functions(L, names_idx);
}

void wire_codec_refresh_sky(wire_codec *c, lua_State *L, int names_idx)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "sky");
    if (lua_type(L, -1) == LUA_TTABLE) {
        WIRE_PUSH_REF(L, c->sky_ref);
        int same = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
        if (!same) {
            name_library(L, names_idx, lua_gettop(L), "sky");
            luaL_unref(L, LUA_REGISTRYINDEX, c->sky_ref);
            lua_pushvalue(L, -1);
            c->sky_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
    }
    lua_pop(L, 2);
}

static int new_table_ref(lua_State *L, const char *weak_mode)
{
    lua_newtable(L);
    if (weak_mode) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, weak_mode);
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

wire_codec *wire_codec_new(lua_State *L, int flags)
{
    wire_codec *c = sky_xcalloc(1, sizeof *c);
    /* Keep the main thread: L may be a coroutine that is collected before
     * the codec is freed; the main thread lives as long as the state. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    c->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    c->flags = flags;
    c->names_ref = new_table_ref(L, NULL);
    c->cache_ref = new_table_ref(L, "k");
    c->protos_ref = new_table_ref(L, NULL);
    c->pure_ref = new_table_ref(L, NULL);
    c->sky_ref = LUA_NOREF;
    c->metas_ref = new_table_ref(L, "k");
    c->classes_ref = new_table_ref(L, NULL);
    sky_buf_init(&c->dump);
    WIRE_PUSH_REF(L, c->names_ref);
    name_standard_libraries(L, lua_gettop(L));
    wire_codec_refresh_sky(c, L, lua_gettop(L));
    lua_pop(L, 1);
    return c;
}

int wire_codec_register_metatable(wire_codec *c, lua_State *L, const char *name, int idx,
                                  wire_err *err)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > WIRE_MAX_METATABLE_NAME) {
        wire_set_err(err, "a metatable name must be 1 to %d bytes long", WIRE_MAX_METATABLE_NAME);
        return -1;
    }
    idx = lua_absindex(L, idx);
    WIRE_PUSH_REF(L, c->classes_ref);
    WIRE_PUSH_REF(L, c->metas_ref);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) != 0) {
        wire_set_err(err, "this table is already registered as '%.80s'", lua_tostring(L, -1));
        lua_pop(L, 3);
        return -1;
    }
    lua_pop(L, 1);
    /* The table the name had before no longer goes by it. */
    if (lua_getfield(L, -2, name) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_rawset(L, -3);
    } else {
        lua_pop(L, 1);
    }
    lua_pushvalue(L, idx);
    lua_pushstring(L, name);
    lua_rawset(L, -3);
    lua_pushvalue(L, idx);
    lua_setfield(L, -3, name);
    lua_pop(L, 2);
    return 0;
}

void wire_codec_free(wire_codec *c)
{
    if (!c)
        return;
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->names_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->cache_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->protos_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->pure_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->sky_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->metas_ref);
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->classes_ref);
    sky_buf_free(&c->dump);
    free(c);
}

/* The bytecode string stays referenced by the store, which never drops an
 * entry, so the pointer outlives the stack slot it was read from. */
const uint8_t *wire_codec_bytecode(wire_codec *c, const wire_hash *h, size_t *len)
{
    lua_State *L = c->L;
    if (!lua_checkstack(L, 3))
        return NULL;
    WIRE_PUSH_REF(L, c->protos_ref);
    lua_pushlstring(L, (const char *)h->b, sizeof h->b);
    const uint8_t *code = NULL;
    if (lua_rawget(L, -2) == LUA_TSTRING)
        code = (const uint8_t *)lua_tolstring(L, -1, len);
    lua_pop(L, 2);
    return code;
}

int wire_codec_define(wire_codec *c, const wire_hash *h, const uint8_t *code, size_t len,
                      wire_err *err)
{
    wire_hash got;
    char want_hex[33];
    wire_hash_bytes(code, len, &got);
    wire_hash_hex(h, want_hex);
    if (memcmp(got.b, h->b, sizeof got.b) != 0) {
        wire_set_err(err, "DEFINE %s: the bytecode does not hash to its announced hash", want_hex);
        return -1;
    }
    if (len < 4 || memcmp(code, LUA_SIGNATURE, 4) != 0) {
        wire_set_err(err, "DEFINE %s: the bytecode is not a Lua binary chunk", want_hex);
        return -1;
    }
    lua_State *L = c->L;
    if (!lua_checkstack(L, 3)) {
        wire_set_err(err, "DEFINE %s: no Lua stack space", want_hex);
        return -1;
    }
    WIRE_PUSH_REF(L, c->protos_ref);
    lua_pushlstring(L, (const char *)h->b, sizeof h->b);
    lua_pushlstring(L, (const char *)code, len);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 0;
}

size_t wire_codec_dump_count(const wire_codec *c) { return c->dumps; }

void wire_hashes_add(wire_hashes *h, const wire_hash *v)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4;
        wire_hash *p = sky_xrealloc(h->v, cap * sizeof *p);
        h->v = p;
        h->cap = cap;
    }
    h->v[h->n++] = *v;
}

void wire_hashes_free(wire_hashes *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
