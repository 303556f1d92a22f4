/*
 * codec_decode: bytes -> Lua values (format in wire_internal.h).
 *
 * Total by construction: every read is bounds-checked, every count is
 * bounded by the bytes left (each value takes at least one byte), nesting
 * is limited, bytecode is loaded (binary mode) only from the codec's own
 * prototype store, and the walk runs inside lua_pcall so a Lua error (out
 * of memory) unwinds cleanly. On failure nothing is left on the stack.
 */
#include "wire/wire.h"
#include "wire/wire_internal.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

struct dec {
    wire_codec *c;
    lua_State *L;
    wire_reader r;
    const uint8_t *start;
    wire_err *err;
    int protos_idx, pure_idx, cache_idx, loaded_idx, refs_idx, metas_idx, classes_idx;
    lua_Integer nrefs;
    int depth;
    int failed;
};

static size_t offset(const struct dec *d) { return (size_t)(d->r.p - d->start); }
static size_t left(const struct dec *d) { return (size_t)(d->r.end - d->r.p); }

static int fail(struct dec *d, size_t at, const char *what)
{
    wire_set_err(d->err, "bad encoded value at byte %zu: %s", at, what);
    d->failed = 1;
    return -1;
}

static int truncated(struct dec *d) { return fail(d, offset(d), "the input ends in the middle of a value"); }

static int dec_value(struct dec *d);

static int enter(struct dec *d)
{
    if (d->depth >= WIRE_MAX_DEPTH)
        return fail(d, offset(d), "tables or functions nested more than 200 deep");
    if (!lua_checkstack(d->L, 8))
        return fail(d, offset(d), "out of Lua stack space");
    d->depth++;
    return 0;
}

/* Gives the value on top of the stack the next reference number. */
static void add_ref(struct dec *d)
{
    lua_pushvalue(d->L, -1);
    lua_rawseti(d->L, d->refs_idx, ++d->nrefs);
}

static int read_count(struct dec *d, uint64_t *n, uint64_t min_bytes_each, const char *what)
{
    size_t at = offset(d);
    if (wire_read_varint(&d->r, n) != WIRE_OK)
        return truncated(d);
    if (*n > left(d) / min_bytes_each) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s count %llu is more than the input can hold", what,
                 (unsigned long long)*n);
        return fail(d, at, msg);
    }
    return 0;
}

/* After a TAG_TABLE_MT table's contents: its metatable. It is set only if
 * it is a metatable known by name on this side (registered here, or on a
 * worker a copy adopted from TAG_CLASS); any other is dropped. */
static int dec_metatable(struct dec *d, int t)
{
    lua_State *L = d->L;
    size_t at = offset(d);
    if (dec_value(d) < 0)
        return -1;
    if (lua_type(L, -1) != LUA_TTABLE)
        return fail(d, at, "a metatable is not a table");
    lua_pushvalue(L, -1);
    int known = lua_rawget(L, d->metas_idx) == LUA_TSTRING;
    lua_pop(L, 1);
    if (known)
        lua_setmetatable(L, t);
    else
        lua_pop(L, 1);
    return 0;
}

static int read_class_name(struct dec *d, const uint8_t **name, size_t *len)
{
    size_t at = offset(d);
    uint64_t n;
    if (wire_read_varint(&d->r, &n) != WIRE_OK || n > left(d) ||
        wire_read_bytes(&d->r, (size_t)n, name) != WIRE_OK)
        return truncated(d);
    if (n == 0 || n > WIRE_MAX_METATABLE_NAME)
        return fail(d, at, "a metatable name is empty or too long");
    *len = (size_t)n;
    return 0;
}

/* A registered metatable's name is known before its contents: the table
 * is named (or stood in for) before anything inside can refer back to it. */
struct class_name {
    const uint8_t *s;
    size_t len;
    int local;   /* out: this side's own table stands in (pushed under the copy) */
};

static int dec_table(struct dec *d, int with_metatable, struct class_name *cls);

/* TAG_CLASS: a registered metatable with its contents. The table registered
 * under the name on this side stands in for it (and for every reference to
 * it, from inside its contents too); without one, a worker adopts the copy
 * under the name, a host keeps it as a plain table. */
static int dec_class(struct dec *d)
{
    struct class_name cls = { 0 };
    if (read_class_name(d, &cls.s, &cls.len) < 0)
        return -1;
    size_t at = offset(d);
    uint8_t tag;
    if (wire_read_u8(&d->r, &tag) != WIRE_OK)
        return truncated(d);
    if (tag != TAG_TABLE && tag != TAG_TABLE_MT)
        return fail(d, at, "a metatable's contents are not a table");
    return dec_table(d, tag == TAG_TABLE_MT, &cls);
}

/* TAG_CLASS_NAME: a metatable this side registered, sent back by name. */
static int dec_class_name(struct dec *d)
{
    lua_State *L = d->L;
    size_t at = offset(d) - 1;
    const uint8_t *name;
    size_t len;
    if (read_class_name(d, &name, &len) < 0)
        return -1;
    lua_pushlstring(L, (const char *)name, len);
    if (lua_rawget(L, d->classes_idx) != LUA_TTABLE) {
        lua_pop(L, 1);
        char msg[300];
        snprintf(msg, sizeof msg, "metatable '%.*s' is not registered on this side",
                 (int)(len > 80 ? 80 : len), (const char *)name);
        return fail(d, at, msg);
    }
    add_ref(d);
    return 0;
}

static void name_class(struct dec *d, struct class_name *cls)
{
    lua_State *L = d->L;
    lua_pushlstring(L, (const char *)cls->s, cls->len);
    if (lua_rawget(L, d->classes_idx) == LUA_TTABLE) {
        /* References to it, from inside its contents too, get our own table. */
        lua_pushvalue(L, -1);
        lua_rawseti(L, d->refs_idx, d->nrefs);
        lua_insert(L, -2);   /* [own, copy] */
        cls->local = 1;
        return;
    }
    lua_pop(L, 1);
    if (d->c->flags & WIRE_CODEC_ADOPT_METATABLES) {
        lua_pushvalue(L, -1);
        lua_pushlstring(L, (const char *)cls->s, cls->len);
        lua_rawset(L, d->metas_idx);
    }
}

static int dec_table(struct dec *d, int with_metatable, struct class_name *cls)
{
    lua_State *L = d->L;
    uint64_t narr, nhash;
    if (enter(d) < 0 || read_count(d, &narr, 1, "array") < 0 ||
        read_count(d, &nhash, 2, "field") < 0)
        return -1;
    if (narr + 2 * nhash > left(d))
        return fail(d, offset(d), "table counts are more than the input can hold");
    lua_createtable(L, (int)narr, (int)nhash);
    add_ref(d);
    if (cls)
        name_class(d, cls);
    int t = lua_gettop(L);
    for (uint64_t i = 1; i <= narr; i++) {
        if (dec_value(d) < 0)
            return -1;
        if (lua_isnil(L, -1))
            lua_pop(L, 1);
        else
            lua_rawseti(L, t, (lua_Integer)i);
    }
    for (uint64_t i = 0; i < nhash; i++) {
        size_t at = offset(d);
        if (dec_value(d) < 0)
            return -1;
        if (lua_isnil(L, -1))
            return fail(d, at, "a table key is nil");
        if (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))
            return fail(d, at, "a table key is NaN");
        if (dec_value(d) < 0)
            return -1;
        lua_rawset(L, t);
    }
    if (with_metatable && dec_metatable(d, t) < 0)
        return -1;
    if (cls && cls->local)
        lua_pop(L, 1);   /* the copy: our own table stays */
    d->depth--;
    return 0;
}

/* Pushes package.loaded[a][b]… for "a.b…", or package.loaded._G[name] for
 * a base function's bare name. Pushes nil if any step is missing. */
static void resolve_name(lua_State *L, int loaded_idx, const char *name, size_t len)
{
    const char *dot = memchr(name, '.', len);
    if (!dot) {
        lua_pushlstring(L, name, len);
        if (lua_rawget(L, loaded_idx) != LUA_TNIL)
            return;
        lua_pop(L, 1);
        lua_pushliteral(L, "_G");
        if (lua_rawget(L, loaded_idx) != LUA_TTABLE)
            return;
        lua_pushlstring(L, name, len);
        lua_rawget(L, -2);
        lua_remove(L, -2);
        return;
    }
    lua_pushvalue(L, loaded_idx);
    const char *p = name, *end = name + len;
    while (p <= end) {
        const char *q = memchr(p, '.', (size_t)(end - p));
        if (!q)
            q = end;
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return;
        }
        lua_pushlstring(L, p, (size_t)(q - p));
        lua_rawget(L, -2);
        lua_remove(L, -2);
        p = q + 1;
    }
}

static int dec_named(struct dec *d)
{
    size_t at = offset(d) - 1;
    uint64_t n;
    const uint8_t *name;
    if (wire_read_varint(&d->r, &n) != WIRE_OK || n > left(d) ||
        wire_read_bytes(&d->r, (size_t)n, &name) != WIRE_OK)
        return truncated(d);
    resolve_name(d->L, d->loaded_idx, (const char *)name, (size_t)n);
    if (lua_isnil(d->L, -1)) {
        lua_pop(d->L, 1);
        char msg[160];
        snprintf(msg, sizeof msg, "library value '%.*s' does not exist on this side",
                 (int)(n > 80 ? 80 : n), (const char *)name);
        return fail(d, at, msg);
    }
    return 0;
}

/* Skips the upvalue records if every one is the global table or a library
 * name (so the loaded closure can be reused as is). 1: pure, 0: not. */
static int skip_pure_upvalues(wire_reader *r, uint64_t nups)
{
    for (uint64_t i = 0; i < nups; i++) {
        uint8_t tag;
        uint64_t n;
        const uint8_t *p;
        if (wire_read_u8(r, &tag) != WIRE_OK)
            return 0;
        if (tag == TAG_GLOBALS)
            continue;
        if (tag != TAG_NAMED || wire_read_varint(r, &n) != WIRE_OK ||
            n > (uint64_t)(r->end - r->p) || wire_read_bytes(r, (size_t)n, &p) != WIRE_OK)
            return 0;
    }
    return 1;
}

/* Pushes a fresh closure of the prototype, loaded from the store. */
static int load_prototype(struct dec *d, const uint8_t *hash, size_t at, uint64_t nups)
{
    lua_State *L = d->L;
    lua_pushlstring(L, (const char *)hash, sizeof(wire_hash));
    if (lua_rawget(L, d->protos_idx) != LUA_TSTRING) {
        lua_pop(L, 1);
        wire_hash h;
        char hex[33], msg[96];
        memcpy(h.b, hash, sizeof h.b);
        wire_hash_hex(&h, hex);
        snprintf(msg, sizeof msg, "unknown function prototype %s (no DEFINE for it)", hex);
        return fail(d, at, msg);
    }
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    int rc = luaL_loadbufferx(L, code, len, "=remote", "b");
    lua_remove(L, -2);
    if (rc != LUA_OK) {
        char msg[200];
        snprintf(msg, sizeof msg, "prototype does not load: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return fail(d, at, msg);
    }
    lua_Debug ar;
    lua_pushvalue(L, -1);
    lua_getinfo(L, ">u", &ar);
    if ((uint64_t)ar.nups != nups) {
        lua_pop(L, 1);
        return fail(d, at, "function upvalue count does not match its prototype");
    }
    /* Re-encoding this closure must name the same prototype, whatever
     * lua_dump would make of it on this side. */
    lua_pushvalue(L, -1);
    lua_pushlstring(L, (const char *)hash, sizeof(wire_hash));
    lua_rawset(L, d->cache_idx);
    return 0;
}

static int dec_function(struct dec *d)
{
    lua_State *L = d->L;
    size_t at = offset(d) - 1;
    const uint8_t *hash;
    uint64_t nups;
    if (enter(d) < 0)
        return -1;
    if (wire_read_bytes(&d->r, sizeof(wire_hash), &hash) != WIRE_OK ||
        wire_read_varint(&d->r, &nups) != WIRE_OK)
        return truncated(d);
    if (nups > 255 || nups > left(d))
        return fail(d, at, "function upvalue count is out of range");

    wire_reader probe = d->r;
    int pure = skip_pure_upvalues(&probe, nups);
    if (pure) {
        /* key = hash | varint nups | upvalue records */
        lua_pushlstring(L, (const char *)hash, (size_t)(probe.p - hash));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, d->pure_idx) == LUA_TFUNCTION) {
            lua_remove(L, -2);
            d->r = probe;
            add_ref(d);
            d->depth--;
            return 0;
        }
        lua_pop(L, 1);
    }
    if (load_prototype(d, hash, at, nups) < 0)
        return -1;
    add_ref(d);
    int f = lua_gettop(L);
    for (uint64_t i = 1; i <= nups; i++) {
        if (dec_value(d) < 0)
            return -1;
        lua_setupvalue(L, f, (int)i);
    }
    if (pure) {
        lua_pushvalue(L, f - 1);
        lua_pushvalue(L, f);
        lua_rawset(L, d->pure_idx);
        lua_remove(L, f - 1);
    }
    d->depth--;
    return 0;
}

static int dec_value(struct dec *d)
{
    lua_State *L = d->L;
    size_t at = offset(d);
    uint8_t tag;
    if (wire_read_u8(&d->r, &tag) != WIRE_OK)
        return truncated(d);
    switch (tag) {
    case TAG_NIL:
        lua_pushnil(L);
        return 0;
    case TAG_FALSE:
    case TAG_TRUE:
        lua_pushboolean(L, tag == TAG_TRUE);
        return 0;
    case TAG_INT: {
        uint64_t u;
        if (wire_read_varint(&d->r, &u) != WIRE_OK)
            return truncated(d);
        lua_pushinteger(L, (lua_Integer)((u >> 1) ^ (0 - (u & 1))));
        return 0;
    }
    case TAG_FLOAT: {
        double v;
        if (wire_read_f64(&d->r, &v) != WIRE_OK)
            return truncated(d);
        lua_pushnumber(L, v);
        return 0;
    }
    case TAG_STRING: {
        uint64_t n;
        const uint8_t *p;
        if (wire_read_varint(&d->r, &n) != WIRE_OK || n > left(d) ||
            wire_read_bytes(&d->r, (size_t)n, &p) != WIRE_OK)
            return truncated(d);
        lua_pushlstring(L, (const char *)p, (size_t)n);
        return 0;
    }
    case TAG_TABLE:
    case TAG_TABLE_MT:
        return dec_table(d, tag == TAG_TABLE_MT, NULL);
    case TAG_CLASS:
        return dec_class(d);
    case TAG_CLASS_NAME:
        return dec_class_name(d);
    case TAG_REF: {
        uint64_t id;
        if (wire_read_varint(&d->r, &id) != WIRE_OK)
            return truncated(d);
        if (id >= (uint64_t)d->nrefs)
            return fail(d, at, "back-reference to a table or function not yet seen");
        lua_rawgeti(L, d->refs_idx, (lua_Integer)id + 1);
        return 0;
    }
    case TAG_GLOBALS:
        lua_pushglobaltable(L);
        return 0;
    case TAG_NAMED:
        return dec_named(d);
    case TAG_FUNCTION:
        return dec_function(d);
    default: {
        char msg[48];
        snprintf(msg, sizeof msg, "unknown value tag %u", tag);
        return fail(d, at, msg);
    }
    }
}

/* lua_pcall body: stack = [dec*]; returns the decoded values. */
static int decode_body(lua_State *L)
{
    struct dec *d = lua_touserdata(L, 1);
    d->L = L;
    WIRE_PUSH_REF(L, d->c->protos_ref);
    d->protos_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, d->c->pure_ref);
    d->pure_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, d->c->cache_ref);
    d->cache_idx = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    d->loaded_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, d->c->metas_ref);
    d->metas_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, d->c->classes_ref);
    d->classes_idx = lua_gettop(L);
    lua_newtable(L);
    d->refs_idx = lua_gettop(L);
    int base = lua_gettop(L);
    while (d->r.p < d->r.end) {
        if (!lua_checkstack(L, 8))
            return fail(d, offset(d), "too many values for the Lua stack"), 0;
        if (dec_value(d) < 0)
            return 0;
        d->depth = 0;
    }
    return lua_gettop(L) - base;
}

int wire_decode(wire_codec *c, lua_State *L, const uint8_t *p, size_t len, wire_err *err)
{
    if (!lua_checkstack(L, 4)) {
        wire_set_err(err, "no Lua stack space to decode into");
        return -1;
    }
    struct dec d;
    memset(&d, 0, sizeof d);
    d.c = c;
    d.r.p = d.start = p;
    d.r.end = p + len;
    d.err = err;
    int top = lua_gettop(L);
    lua_pushcfunction(L, decode_body);
    lua_pushlightuserdata(L, &d);
    int status = lua_pcall(L, 1, LUA_MULTRET, 0);
    if (status != LUA_OK) {
        if (!d.failed)
            wire_set_err(err, "cannot decode values: %s",
                         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "Lua error");
        lua_settop(L, top);
        return -1;
    }
    if (d.failed) {
        lua_settop(L, top);
        return -1;
    }
    return lua_gettop(L) - top;
}
