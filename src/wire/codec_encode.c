/*
 * codec_encode: Lua values -> bytes (format in wire_internal.h).
 *
 * Tables and closures get a reference number when first met, so shared
 * references and cycles (a recursive local function is its own upvalue)
 * come out as back-references. The global table becomes a marker, library
 * values become names, everything else that cannot travel (userdata,
 * threads, unnamed C functions) is refused with the path that leads to it.
 * A table whose metatable is known by name (registered with
 * wire_codec_register_metatable, or adopted by a worker) carries it; other
 * metatables are dropped. A registered metatable itself, wherever it is
 * met, goes as TAG_CLASS (name and contents); a worker's adopted copy goes
 * back as its name only, and the host puts its own table in its place.
 *
 * The walk runs inside lua_pcall so a Lua error (out of memory) cannot
 * longjmp over the caller's C frames; on any failure the output buffer is
 * cut back to its length on entry, so nothing partial is ever sent.
 */
#include "wire/wire.h"
#include "wire/wire_internal.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

enum seg_kind { SEG_ROOT, SEG_UPVALUE, SEG_FIELD, SEG_INDEX, SEG_FLOATKEY, SEG_OTHERKEY, SEG_KEY, SEG_META };

/* One step of the path from a root value to the one being encoded. */
struct path_seg {
    enum seg_kind kind;
    const char *s;   /* upvalue name or string key (alive on the Lua stack) */
    size_t slen;
    lua_Integer i;   /* root number (1-based), integer key */
    double d;        /* float key */
};

struct enc {
    wire_codec *c;
    lua_State *L;
    sky_buf *out;
    wire_hashes *protos;
    wire_err *err;
    enum wire_roots roots;
    int strip;
    int names_idx, cache_idx, protos_idx, refs_idx, metas_idx, classes_idx;
    lua_Integer next_ref;
    int depth;
    int failed;
    /* Each level of nesting adds at most a key and a field/upvalue step. */
    struct path_seg path[2 * WIRE_MAX_DEPTH + 8];
    int npath;
};

static void push_seg(struct enc *e, struct path_seg s) { e->path[e->npath++] = s; }
static void pop_seg(struct enc *e) { e->npath--; }

static void append_root(sky_buf *b, const struct enc *e, const struct path_seg *s, int alone)
{
    switch (e->roots) {
    case WIRE_ROOTS_CALL:
        /* The function is implicit in its upvalues' paths: "upvalue 'x'". */
        if (s->i == 1) {
            if (alone)
                sky_buf_append_str(b, "function");
        } else {
            sky_buf_printf(b, "argument %lld", (long long)(s->i - 1));
        }
        break;
    case WIRE_ROOTS_RESULTS:
        sky_buf_printf(b, "result %lld", (long long)s->i);
        break;
    case WIRE_ROOTS_VALUES:
        sky_buf_printf(b, "value %lld", (long long)s->i);
        break;
    }
}

static void append_seg(sky_buf *b, const struct path_seg *s)
{
    int n = s->slen > 40 ? 40 : (int)s->slen;
    const char *more = s->slen > 40 ? "…" : "";
    switch (s->kind) {
    case SEG_ROOT:
        break;
    case SEG_UPVALUE:
        sky_buf_printf(b, "upvalue '%.*s%s'", n, s->s, more);
        break;
    case SEG_FIELD:
        sky_buf_printf(b, "field '%.*s%s'", n, s->s, more);
        break;
    case SEG_INDEX:
        sky_buf_printf(b, "[%lld]", (long long)s->i);
        break;
    case SEG_FLOATKEY:
        sky_buf_printf(b, "[%.14g]", s->d);
        break;
    case SEG_OTHERKEY:
        sky_buf_printf(b, "[%.*s key]", n, s->s);
        break;
    case SEG_KEY:
        sky_buf_append_str(b, "key");
        break;
    case SEG_META:
        sky_buf_append_str(b, "metatable");
        break;
    }
}

/* "argument 2 field 'cb'"; a long path keeps its head and its tail. */
static void format_path(const struct enc *e, char *dst, size_t cap)
{
    sky_buf b = SKY_BUF_INIT;
    for (int i = 0; i < e->npath; i++) {
        size_t before = b.len;
        if (e->path[i].kind == SEG_ROOT)
            append_root(&b, e, &e->path[i], e->npath == 1);
        else
            append_seg(&b, &e->path[i]);
        if (b.len > before && i + 1 < e->npath)
            sky_buf_append_byte(&b, ' ');
    }
    while (b.len && b.data[b.len - 1] == ' ')
        b.len--;
    const char *s = sky_buf_cstr(&b);
    size_t keep = cap - 1;
    if (b.len <= keep) {
        memcpy(dst, s, b.len + 1);
    } else {
        size_t head = keep / 3, tail = keep - head - 5;
        snprintf(dst, cap, "%.*s … %s", (int)head, s, s + b.len - tail);
    }
    sky_buf_free(&b);
}

static int fail_at(struct enc *e, const char *what)
{
    char path[160];
    format_path(e, path, sizeof path);
    wire_set_err(e->err, "%s %s", path, what);
    e->failed = 1;
    return -1;
}

static int refuse(struct enc *e, const char *type_desc)
{
    char what[64];
    snprintf(what, sizeof what, "(%s) cannot be sent", type_desc);
    return fail_at(e, what);
}

static int enc_value(struct enc *e, int idx);

/* Sends the value's library name if it has one. 1: sent, 0: not a name. */
static int enc_named(struct enc *e, int idx)
{
    lua_State *L = e->L;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->names_idx) != LUA_TSTRING) {
        lua_pop(L, 1);
        return 0;
    }
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    sky_buf_append_byte(e->out, TAG_NAMED);
    sky_buf_append_varint(e->out, n);
    sky_buf_append(e->out, name, n);
    lua_pop(L, 1);
    return 1;
}

/* Sends a back-reference if the table or closure was met before; otherwise
 * gives it the next number. 1: back-reference sent, 0: first time. */
static int enc_ref(struct enc *e, int idx)
{
    lua_State *L = e->L;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->refs_idx) == LUA_TNUMBER) {
        sky_buf_append_byte(e->out, TAG_REF);
        sky_buf_append_varint(e->out, (uint64_t)lua_tointeger(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushinteger(L, e->next_ref++);
    lua_rawset(L, e->refs_idx);
    return 0;
}

static int enter(struct enc *e)
{
    if (e->depth >= WIRE_MAX_DEPTH)
        return fail_at(e, "is nested more than 200 tables or functions deep and cannot be sent");
    if (!lua_checkstack(e->L, 8))
        return fail_at(e, "cannot be sent: out of Lua stack space");
    e->depth++;
    return 0;
}

static void key_seg(lua_State *L, int key_idx, struct path_seg *s)
{
    memset(s, 0, sizeof *s);
    switch (lua_type(L, key_idx)) {
    case LUA_TSTRING:
        s->kind = SEG_FIELD;
        s->s = lua_tolstring(L, key_idx, &s->slen);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, key_idx)) {
            s->kind = SEG_INDEX;
            s->i = lua_tointeger(L, key_idx);
        } else {
            s->kind = SEG_FLOATKEY;
            s->d = lua_tonumber(L, key_idx);
        }
        break;
    default:
        s->kind = SEG_OTHERKEY;
        s->s = lua_typename(L, lua_type(L, key_idx));
        s->slen = strlen(s->s);
        break;
    }
}

static int enc_pair_value(struct enc *e, int key_idx, int value_idx)
{
    struct path_seg s;
    key_seg(e->L, key_idx, &s);
    push_seg(e, s);
    int rc = enc_value(e, value_idx);
    pop_seg(e);
    return rc;
}

/* A table known by a metatable name: a copy adopted from the peer goes
 * back by name only (1: done); one registered here is marked TAG_CLASS and
 * its contents follow (0). */
static int enc_class(struct enc *e, int idx)
{
    lua_State *L = e->L;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->metas_idx) != LUA_TSTRING) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushvalue(L, -1);
    int own = lua_rawget(L, e->classes_idx) == LUA_TTABLE && lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    sky_buf_append_byte(e->out, own ? TAG_CLASS : TAG_CLASS_NAME);
    sky_buf_append_varint(e->out, n);
    sky_buf_append(e->out, name, n);
    lua_pop(L, 1);
    return !own;
}

static int enc_table(struct enc *e, int idx)
{
    lua_State *L = e->L;
    if (enc_class(e, idx))
        return 0;
    if (enter(e) < 0)
        return -1;
    lua_Unsigned narr = lua_rawlen(L, idx), nhash = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
              (lua_Unsigned)lua_tointeger(L, -1) <= narr))
            nhash++;
    }
    /* A metatable known by name travels with the table; any other is dropped. */
    int meta = 0;
    if (lua_getmetatable(L, idx)) {
        lua_pushvalue(L, -1);
        int known = lua_rawget(L, e->metas_idx) == LUA_TSTRING;
        lua_pop(L, 1);
        if (known)
            meta = lua_gettop(L);   /* stays on the stack until the end */
        else
            lua_pop(L, 1);
    }
    sky_buf_append_byte(e->out, meta ? TAG_TABLE_MT : TAG_TABLE);
    sky_buf_append_varint(e->out, narr);
    sky_buf_append_varint(e->out, nhash);
    for (lua_Unsigned i = 1; i <= narr; i++) {
        lua_pushinteger(L, (lua_Integer)i);
        lua_rawgeti(L, idx, (lua_Integer)i);
        int rc = enc_pair_value(e, lua_gettop(L) - 1, lua_gettop(L));
        lua_pop(L, 2);
        if (rc < 0)
            return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int k = lua_gettop(L) - 1, v = lua_gettop(L);
        if (lua_isinteger(L, k) && lua_tointeger(L, k) >= 1 &&
            (lua_Unsigned)lua_tointeger(L, k) <= narr) {
            lua_pop(L, 1);
            continue;
        }
        push_seg(e, (struct path_seg){ .kind = SEG_KEY });
        int rc = enc_value(e, k);
        pop_seg(e);
        if (rc < 0 || enc_pair_value(e, k, v) < 0)
            return -1;
        lua_pop(L, 1);
    }
    if (meta) {
        push_seg(e, (struct path_seg){ .kind = SEG_META });
        int rc = enc_value(e, meta);
        pop_seg(e);
        if (rc < 0)
            return -1;
        lua_pop(L, 1);
    }
    e->depth--;
    return 0;
}

static int write_dump(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    sky_buf_append(ud, p, sz);
    return 0;
}

/* Pushes the 16-byte hash string of the closure at idx, dumping it (and
 * storing its bytecode) only the first time this codec sees it. */
static void push_function_hash(struct enc *e, int idx)
{
    lua_State *L = e->L;
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->cache_idx) == LUA_TSTRING)
        return;
    lua_pop(L, 1);
    sky_buf *dump = &e->c->dump;
    sky_buf_reset(dump);
    lua_pushvalue(L, idx);
    lua_dump(L, write_dump, dump, e->strip);
    e->c->dumps++;
    lua_pop(L, 1);
    wire_hash h;
    wire_hash_bytes(dump->data, dump->len, &h);
    lua_pushlstring(L, (const char *)h.b, sizeof h.b);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, e->protos_idx) == LUA_TNIL) {
        lua_pushvalue(L, -2);
        lua_pushlstring(L, (const char *)dump->data, dump->len);
        lua_rawset(L, e->protos_idx);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, e->cache_idx);
}

/* Lists the prototype once per encoding (the refs table doubles as the
 * "already listed" set: hash strings never get reference numbers). */
static void note_prototype(struct enc *e, int hash_idx)
{
    lua_State *L = e->L;
    if (!e->protos)
        return;
    lua_pushvalue(L, hash_idx);
    int seen = lua_rawget(L, e->refs_idx) != LUA_TNIL;
    lua_pop(L, 1);
    if (seen)
        return;
    lua_pushvalue(L, hash_idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->refs_idx);
    wire_hash h;
    memcpy(h.b, lua_tostring(L, hash_idx), sizeof h.b);
    wire_hashes_add(e->protos, &h);
}

static int enc_function(struct enc *e, int idx)
{
    lua_State *L = e->L;
    if (enter(e) < 0)
        return -1;
    lua_Debug ar;
    lua_pushvalue(L, idx);
    lua_getinfo(L, ">u", &ar);
    push_function_hash(e, idx);
    note_prototype(e, lua_gettop(L));
    sky_buf_append_byte(e->out, TAG_FUNCTION);
    sky_buf_append(e->out, lua_tostring(L, -1), sizeof(wire_hash));
    sky_buf_append_varint(e->out, ar.nups);
    lua_pop(L, 1);
    for (int i = 1; i <= ar.nups; i++) {
        const char *name = lua_getupvalue(L, idx, i);
        push_seg(e, (struct path_seg){ .kind = SEG_UPVALUE, .s = name, .slen = strlen(name) });
        int rc = enc_value(e, lua_gettop(L));
        pop_seg(e);
        lua_pop(L, 1);
        if (rc < 0)
            return -1;
    }
    e->depth--;
    return 0;
}

static void enc_integer(struct enc *e, lua_Integer i)
{
    uint64_t u = (uint64_t)i;
    sky_buf_append_byte(e->out, TAG_INT);
    sky_buf_append_varint(e->out, (u << 1) ^ (uint64_t)-(int64_t)(u >> 63));
}

static int enc_value(struct enc *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        sky_buf_append_byte(e->out, TAG_NIL);
        return 0;
    case LUA_TBOOLEAN:
        sky_buf_append_byte(e->out, lua_toboolean(L, idx) ? TAG_TRUE : TAG_FALSE);
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            enc_integer(e, lua_tointeger(L, idx));
        } else {
            sky_buf_append_byte(e->out, TAG_FLOAT);
            wire_append_f64(e->out, lua_tonumber(L, idx));
        }
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        sky_buf_append_byte(e->out, TAG_STRING);
        sky_buf_append_varint(e->out, n);
        sky_buf_append(e->out, s, n);
        return 0;
    }
    case LUA_TTABLE:
        lua_pushglobaltable(L);
        if (lua_rawequal(L, -1, idx)) {
            lua_pop(L, 1);
            sky_buf_append_byte(e->out, TAG_GLOBALS);
            return 0;
        }
        lua_pop(L, 1);
        if (enc_named(e, idx) || enc_ref(e, idx))
            return 0;
        return enc_table(e, idx);
    case LUA_TFUNCTION:
        if (enc_named(e, idx))
            return 0;
        if (lua_iscfunction(L, idx))
            return refuse(e, "a C function");
        if (enc_ref(e, idx))
            return 0;
        return enc_function(e, idx);
    case LUA_TUSERDATA:
        if (enc_named(e, idx))
            return 0;
        return refuse(e, "a userdata");
    case LUA_TLIGHTUSERDATA:
        return refuse(e, "a light userdata");
    case LUA_TTHREAD:
        return refuse(e, "a thread");
    default:
        return refuse(e, lua_typename(L, lua_type(L, idx)));
    }
}

/* lua_pcall body: stack = [enc*, values…]. */
static int encode_body(lua_State *L)
{
    struct enc *e = lua_touserdata(L, 1);
    int n = lua_gettop(L) - 1;
    e->L = L;
    WIRE_PUSH_REF(L, e->c->names_ref);
    e->names_idx = lua_gettop(L);
    wire_codec_refresh_sky(e->c, L, e->names_idx);
    WIRE_PUSH_REF(L, e->c->cache_ref);
    e->cache_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, e->c->protos_ref);
    e->protos_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, e->c->metas_ref);
    e->metas_idx = lua_gettop(L);
    WIRE_PUSH_REF(L, e->c->classes_ref);
    e->classes_idx = lua_gettop(L);
    lua_newtable(L);
    e->refs_idx = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        push_seg(e, (struct path_seg){ .kind = SEG_ROOT, .i = i });
        int rc = enc_value(e, i + 1);
        pop_seg(e);
        if (rc < 0)
            break;
    }
    return 0;
}

int wire_encode(wire_codec *c, lua_State *L, int idx, int n, enum wire_roots roots, sky_buf *out,
                wire_hashes *protos, wire_err *err)
{
    size_t start = out->len, nprotos = protos ? protos->n : 0;
    if (n < 0 || !lua_checkstack(L, n + 8)) {
        wire_set_err(err, "too many values to send (%d)", n);
        return -1;
    }
    idx = lua_absindex(L, idx);
    struct enc e;
    memset(&e, 0, sizeof e);
    e.c = c;
    e.out = out;
    e.protos = protos;
    e.err = err;
    e.roots = roots;
    e.strip = !(c->flags & WIRE_CODEC_KEEP_DEBUG);
    lua_pushcfunction(L, encode_body);
    lua_pushlightuserdata(L, &e);
    for (int i = 0; i < n; i++)
        lua_pushvalue(L, idx + i);
    int status = lua_pcall(L, n + 1, 0, 0);
    if (status != LUA_OK) {
        if (!e.failed)
            wire_set_err(err, "cannot encode values: %s",
                         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "Lua error");
        lua_pop(L, 1);
        e.failed = 1;
    }
    if (e.failed) {
        out->len = start;
        if (protos)
            protos->n = nprotos;
        return -1;
    }
    return 0;
}
