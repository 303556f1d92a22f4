/*
 * wire: everything that crosses between the host and a worker.
 *
 *  - frames: length-prefixed, typed messages, lz4-compressed above a size
 *    threshold; a total decoder (every malformed input is an error, never a
 *    crash; it is fuzzed);
 *  - messages: the bodies of HELLO, SETUP, DEFINE, CALL, RESULT, ERROR,
 *    OUTPUT, PING and BYE;
 *  - values: Lua values <-> bytes, closures with their upvalues included.
 *
 * The host and the worker link the same code. It depends on Lua, lz4 and
 * libc only.
 *
 * Frame layout (all integers little-endian):
 *     u32 body_len | u8 type | u8 flags | body[body_len]
 * flags bit 0 (WIRE_FLAG_LZ4): body is u32 raw_len | lz4 block of raw_len bytes.
 * body_len and raw_len are at most WIRE_MAX_BODY.
 *
 * Conversation: the worker speaks first (HELLO: magic, protocol version,
 * Lua version, then its facts). The host checks the versions, then sends
 * SETUP. After that the host sends DEFINE (a function prototype, once per
 * worker), CALL, PING, CANCEL, BYE; the worker sends RESULT, ERROR, OUTPUT,
 * PONG, CANCELLED. PING and CANCEL are answered by the worker's input
 * thread at once, also while a call runs.
 * Bytecode only ever flows host -> worker: the host never loads bytecode
 * that a worker sent (a function in a result must be one the host sent).
 */
#ifndef SKY_WIRE_H
#define SKY_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "util/buf.h"

#define WIRE_PROTOCOL_VERSION 3u   /* 2: tables may carry a registered metatable (TAG_TABLE_MT);
                                      3: PONG, CANCEL, CANCELLED (liveness, calls moved off a busy worker) */
#define WIRE_MAGIC "SKYRUN\0\1"        /* 8 bytes, first in HELLO */
#define WIRE_HEADER_SIZE 6u
#define WIRE_MAX_BODY (256u << 20)      /* 256 MiB, compressed or not */
#define WIRE_COMPRESS_THRESHOLD 2048u   /* bodies at least this long are tried with lz4 */
#define WIRE_FLAG_LZ4 0x01u

enum wire_type {
    WIRE_HELLO = 1,   /* worker -> host */
    WIRE_SETUP = 2,   /* host -> worker */
    WIRE_DEFINE = 3,  /* host -> worker: function prototype */
    WIRE_CALL = 4,    /* host -> worker */
    WIRE_RESULT = 5,  /* worker -> host */
    WIRE_ERROR = 6,   /* worker -> host */
    WIRE_OUTPUT = 7,  /* worker -> host: lines the call printed */
    WIRE_PING = 8,    /* host -> worker: heartbeat, no body */
    WIRE_BYE = 9,     /* host -> worker: finish and exit, no body */
    WIRE_PONG = 10,   /* worker -> host: answers a PING at once, even while a call runs; no body */
    WIRE_CANCEL = 11, /* host -> worker: u64 id of a call to give back if it has not started */
    WIRE_CANCELLED = 12, /* worker -> host: u64 id of a call given back (it never ran there) */
};
#define WIRE_LAST_TYPE WIRE_CANCELLED

/* Return codes of the decoders. */
enum { WIRE_OK = 0, WIRE_AGAIN = 1, WIRE_EBAD = -1 };

/* Error kinds in an ERROR message. */
enum wire_error_kind {
    WIRE_ERR_USER = 1,     /* the function raised: never retried */
    WIRE_ERR_TIMEOUT = 2,  /* the call ran past its timeout */
    WIRE_ERR_DECODE = 3,   /* the worker could not decode the call */
};

/* Error text for the decoders: names what was wrong and where. */
typedef struct wire_err {
    char msg[256];
} wire_err;

/* ---- frames ------------------------------------------------------------ */

typedef struct wire_frame {
    uint8_t type;
    const uint8_t *body;   /* points into the input, or into scratch if it was compressed */
    size_t len;
} wire_frame;

/* Appends one frame to out, compressing the body when that makes it shorter.
 * len must be at most WIRE_MAX_BODY (callers check; a larger body aborts). */
void wire_frame_append(sky_buf *out, uint8_t type, const void *body, size_t len);

/* Parses the frame at the front of data[0..len). WIRE_OK: *f is filled and
 * *consumed bytes belong to it (f->body is valid until scratch or data
 * change). WIRE_AGAIN: more bytes are needed. WIRE_EBAD: malformed (err). */
int wire_frame_next(const uint8_t *data, size_t len, sky_buf *scratch,
                    wire_frame *f, size_t *consumed, wire_err *err);

/* "CALL", "RESULT", … for a known frame type; NULL otherwise. */
const char *wire_type_name(uint8_t type);

/* ---- a cursor over a body ---------------------------------------------- */

typedef struct wire_reader {
    const uint8_t *p, *end;
} wire_reader;

int wire_read_u8(wire_reader *r, uint8_t *v);
int wire_read_u32(wire_reader *r, uint32_t *v);
int wire_read_u64(wire_reader *r, uint64_t *v);
int wire_read_f64(wire_reader *r, double *v);
int wire_read_varint(wire_reader *r, uint64_t *v);
int wire_read_bytes(wire_reader *r, size_t n, const uint8_t **p);
void wire_append_f64(sky_buf *b, double v);

/* ---- values -------------------------------------------------------------- */

/* A function prototype's identity: a 128-bit hash of its bytecode. */
typedef struct wire_hash {
    uint8_t b[16];
} wire_hash;

/* The hash of some bytes, and its 32-digit hex form (for messages). */
void wire_hash_bytes(const void *data, size_t len, wire_hash *out);
void wire_hash_hex(const wire_hash *h, char out[33]);

/* The distinct prototypes one encoding referred to (in first-use order). */
typedef struct wire_hashes {
    wire_hash *v;
    size_t n, cap;
} wire_hashes;
void wire_hashes_free(wire_hashes *h);

/* A codec belongs to one lua_State. It keeps: the names of standard-library
 * values (and the `sky` module) in both directions; a cache from closures to
 * their bytecode and hash; the prototypes this side knows (host: those it
 * encoded; worker: those DEFINEd to it). */
typedef struct wire_codec wire_codec;

enum wire_codec_flags {
    WIRE_CODEC_KEEP_DEBUG = 1,  /* dump bytecode with debug info (line numbers in tracebacks) */
    WIRE_CODEC_ADOPT_METATABLES = 2, /* workers: a metatable whose name is not registered
                                        here is taken from the copy that came with it
                                        (else such a table arrives without one) */
};
wire_codec *wire_codec_new(lua_State *L, int flags);
void wire_codec_free(wire_codec *c);   /* before lua_close(L): it releases registry entries */

/* Registers the table at idx as the metatable called name: tables with it
 * travel with it (the metatable itself by value, with its methods), and on
 * a side where the name is registered they get that side's own table back,
 * so `getmetatable(result) == Point` holds on the host. Registering a name
 * again replaces its table; a table has one name. Returns 0, or -1 (err:
 * empty or over-long name, table registered under another name). */
int wire_codec_register_metatable(wire_codec *c, lua_State *L, const char *name, int idx,
                                  wire_err *err);

/* How the values being encoded are named in error messages. */
enum wire_roots {
    WIRE_ROOTS_CALL,     /* value 1 is "function" (its upvalues: "upvalue 'x'"), then "argument 1", … */
    WIRE_ROOTS_RESULTS,  /* "result 1", "result 2", … */
    WIRE_ROOTS_VALUES,   /* "value 1", … */
};

/* Appends the encoding of the n values at stack indices idx..idx+n-1 to out.
 * Prototypes referred to are appended to protos (may be NULL). On failure
 * returns -1, leaves out's length as it was, and err names the path of what
 * could not be sent: "upvalue 'conn' (a userdata) cannot be sent",
 * "argument 2 field 'cb' (a C function) cannot be sent". The stack is left
 * balanced either way. */
int wire_encode(wire_codec *c, lua_State *L, int idx, int n, enum wire_roots roots,
                sky_buf *out, wire_hashes *protos, wire_err *err);

/* Decodes every value in [p, p+len), pushes them and returns how many; or
 * returns -1 with nothing pushed and err set. Functions must refer to
 * prototypes this codec knows. Never crashes on any input. */
int wire_decode(wire_codec *c, lua_State *L, const uint8_t *p, size_t len, wire_err *err);

/* Bytecode of a prototype this codec knows (to send a DEFINE), or NULL. */
const uint8_t *wire_codec_bytecode(wire_codec *c, const wire_hash *h, size_t *len);

/* How many times this codec ran lua_dump (each closure is dumped once). */
size_t wire_codec_dump_count(const wire_codec *c);

/* Worker side: learn a prototype from a DEFINE. Checks that the bytecode
 * hashes to h. Returns 0 or -1 (err). */
int wire_codec_define(wire_codec *c, const wire_hash *h, const uint8_t *code, size_t len, wire_err *err);

/* ---- message bodies ------------------------------------------------------ */

/* HELLO: magic, u32 protocol, u32 LUA_VERSION_NUM, then one encoded table of
 * facts: { hostname=, pid=, cores=, memory= (bytes), accelerators = { {name=, bus=}, … },
 * lua = "Lua 5.4.x" }. */
void wire_hello_append(sky_buf *body, const uint8_t *facts, size_t facts_len);
/* Checks magic and versions: on mismatch returns WIRE_EBAD with a message
 * that says both sides' protocol and Lua versions. *facts points at the encoded table. */
int wire_hello_parse(const uint8_t *p, size_t len, const uint8_t **facts, size_t *facts_len, wire_err *err);

/* SETUP: one encoded table { node=, nodes=, worker=, workers=, heartbeat= (s), node_name=, workdir= }. */

/* DEFINE: 16-byte hash | bytecode. */
void wire_define_append(sky_buf *body, const wire_hash *h, const uint8_t *code, size_t len);
int wire_define_parse(const uint8_t *p, size_t len, wire_hash *h, const uint8_t **code, size_t *code_len, wire_err *err);

/* CALL: u64 id | f64 timeout seconds (0 = none) | encoded values (function, arguments…). */
void wire_call_header(sky_buf *body, uint64_t id, double timeout);
int wire_call_parse(const uint8_t *p, size_t len, uint64_t *id, double *timeout,
                    const uint8_t **values, size_t *values_len, wire_err *err);

/* RESULT: u64 id | encoded results. */
void wire_result_header(sky_buf *body, uint64_t id);
int wire_result_parse(const uint8_t *p, size_t len, uint64_t *id,
                      const uint8_t **values, size_t *values_len, wire_err *err);

/* ERROR: u64 id | u8 kind | varint len | message | varint len | traceback. */
void wire_error_append(sky_buf *body, uint64_t id, uint8_t kind, const char *msg, size_t msg_len,
                       const char *traceback, size_t tb_len);
int wire_error_parse(const uint8_t *p, size_t len, uint64_t *id, uint8_t *kind,
                     const char **msg, size_t *msg_len, const char **tb, size_t *tb_len, wire_err *err);

/* CANCEL and CANCELLED: u64 id. */
void wire_id_append(sky_buf *body, uint64_t id);
int wire_id_parse(const uint8_t *p, size_t len, uint64_t *id, wire_err *err);

/* OUTPUT: u8 stream (1 stdout, 2 stderr) | bytes (whole lines, except at the end of a call). */
void wire_output_append(sky_buf *body, uint8_t stream, const void *bytes, size_t len);
int wire_output_parse(const uint8_t *p, size_t len, uint8_t *stream, const uint8_t **bytes,
                      size_t *n, wire_err *err);

#endif
