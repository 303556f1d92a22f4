/*
 * wire_internal: helpers shared by the files of the wire layer and nothing
 * else (error formatting, the value tags of the codec).
 */
#ifndef SKY_WIRE_INTERNAL_H
#define SKY_WIRE_INTERNAL_H

#include "wire/wire.h"

void wire_set_err(wire_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One byte before every encoded value. */
enum wire_tag {
    TAG_NIL = 0,
    TAG_FALSE = 1,
    TAG_TRUE = 2,
    TAG_INT = 3,      /* zigzag varint */
    TAG_FLOAT = 4,    /* f64 */
    TAG_STRING = 5,   /* varint len | bytes */
    TAG_TABLE = 6,    /* varint n_array | varint n_hash | n_array values | n_hash key,value pairs */
    TAG_REF = 7,      /* varint index of an earlier table or function in this encoding */
    TAG_GLOBALS = 8,  /* the receiving side's global table */
    TAG_NAMED = 9,    /* varint len | name: a library value resolved through package.loaded */
    TAG_FUNCTION = 10, /* 16-byte hash | varint n_upvalues | upvalues */
    TAG_TABLE_MT = 11, /* as TAG_TABLE, then the metatable (a value: TAG_CLASS, TAG_CLASS_NAME, TAG_REF) */
    TAG_CLASS = 12,    /* varint len | name | TAG_TABLE or TAG_TABLE_MT: a registered metatable */
    TAG_CLASS_NAME = 13 /* varint len | name: the receiver's own registered metatable (sent back) */
};

/* The codec's Lua-side tables, kept in the registry (see codec.c). */
struct wire_codec {
    lua_State *L;    /* main thread of the state whose registry holds the tables below */
    int flags;
    int names_ref;   /* value -> "string.format": library values sent by name */
    int cache_ref;   /* weak-keyed: closure -> 16-byte hash string */
    int protos_ref;  /* hash string -> bytecode string: the prototypes this side knows */
    int pure_ref;    /* hash + upvalue bytes -> loaded closure, for closures whose
                        upvalues are only globals and library names */
    int sky_ref;     /* the `sky` table whose fields are in names (LUA_NOREF before) */
    int metas_ref;   /* weak-keyed: metatable -> name (registered here, and copies adopted
                        from TAG_CLASS on workers) */
    int classes_ref; /* name -> metatable registered on this side */
    sky_buf dump;    /* scratch for lua_dump */
    size_t dumps;    /* how many closures were dumped (the cache's effect, for tests) */
};

/* Pushes codec table `ref` from the registry. */
#define WIRE_PUSH_REF(L, ref) lua_rawgeti((L), LUA_REGISTRYINDEX, (ref))

/* Adds the fields of package.loaded.sky to names if that table is new. */
void wire_codec_refresh_sky(wire_codec *c, lua_State *L, int names_idx);
void wire_hashes_add(wire_hashes *h, const wire_hash *v);

/* Longest metatable name (sky.metatable). */
#define WIRE_MAX_METATABLE_NAME 200

/* Nesting of tables and functions allowed in one encoding, both ways. */
#define WIRE_MAX_DEPTH 200

#endif
