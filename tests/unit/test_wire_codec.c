/*
 * test_wire_codec: Lua values survive encode on one lua_State and decode
 * on another (as between host and worker), closures included; what cannot
 * travel is refused with its path; the decoder survives any input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

/* Two sides of a conversation: each a Lua state with its codec. */
struct side {
    lua_State *L;
    wire_codec *c;
};
struct pair {
    struct side host, worker;
    sky_buf buf;
    wire_hashes protos;
    wire_err err;
};

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    return L;
}

static int setup(void **state)
{
    struct pair *p = calloc(1, sizeof *p);
    p->host.L = new_state();
    p->worker.L = new_state();
    p->host.c = wire_codec_new(p->host.L, WIRE_CODEC_KEEP_DEBUG);
    p->worker.c = wire_codec_new(p->worker.L, WIRE_CODEC_ADOPT_METATABLES);   /* as skyrun-worker */
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    wire_codec_free(p->host.c);
    wire_codec_free(p->worker.c);
    lua_close(p->host.L);
    lua_close(p->worker.L);
    sky_buf_free(&p->buf);
    wire_hashes_free(&p->protos);
    free(p);
    return 0;
}

/* Runs Lua code on L that returns values; fails the test on error. */
static int run(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("Lua error: %s", lua_tostring(L, -1));
    return lua_gettop(L) - top;
}

/* Sends the DEFINEs a real host would: every prototype the encoding named. */
static void define_all(struct pair *p)
{
    for (size_t i = 0; i < p->protos.n; i++) {
        size_t len;
        const uint8_t *code = wire_codec_bytecode(p->host.c, &p->protos.v[i], &len);
        assert_non_null(code);
        assert_int_equal(wire_codec_define(p->worker.c, &p->protos.v[i], code, len, &p->err), 0);
    }
}

/* Encodes the n values on top of the host stack (popping them), decodes
 * them on the worker; returns how many the worker got. */
static int ship(struct pair *p, int n, enum wire_roots roots)
{
    lua_State *H = p->host.L;
    sky_buf_reset(&p->buf);
    p->protos.n = 0;
    int top = lua_gettop(H);
    if (wire_encode(p->host.c, H, -n, n, roots, &p->buf, &p->protos, &p->err) != 0)
        fail_msg("encode failed: %s", p->err.msg);
    assert_int_equal(lua_gettop(H), top);
    lua_pop(H, n);
    define_all(p);
    int got = wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err);
    if (got < 0)
        fail_msg("decode failed: %s", p->err.msg);
    return got;
}

/* Calls a Lua check function on the worker with the shipped values as
 * arguments; it returns true or an error message. */
static void check_on_worker(struct pair *p, int n, const char *check)
{
    lua_State *W = p->worker.L;
    if (luaL_loadstring(W, check) != LUA_OK)
        fail_msg("check does not compile: %s", lua_tostring(W, -1));
    lua_insert(W, -n - 1);
    if (lua_pcall(W, n, 1, 0) != LUA_OK)
        fail_msg("check raised: %s", lua_tostring(W, -1));
    if (!lua_toboolean(W, -1))
        fail_msg("check failed: %s", lua_tostring(W, -1));
    lua_pop(W, 1);
}

static void roundtrip(struct pair *p, const char *make, const char *check)
{
    int n = run(p->host.L, make);
    int got = ship(p, n, WIRE_ROOTS_VALUES);
    assert_int_equal(got, n);
    check_on_worker(p, got, check);
    assert_int_equal(lua_gettop(p->worker.L), 0);
}

static void scalars_keep_their_type_and_value(void **state)
{
    roundtrip(*state,
              "return nil, true, false, 0, -1, math.maxinteger, math.mininteger, 1.0, -0.5,"
              " 1/0, -1/0, 0/0, 2^53, 'plain', 'a\\0b\\0', ''",
              "local a = table.pack(...)\n"
              "assert(a.n == 16)\n"
              "assert(a[1] == nil and a[2] == true and a[3] == false)\n"
              "assert(math.type(a[4]) == 'integer' and a[4] == 0)\n"
              "assert(a[5] == -1 and a[6] == math.maxinteger and a[7] == math.mininteger)\n"
              "assert(math.type(a[8]) == 'float' and a[8] == 1.0)\n"
              "assert(a[9] == -0.5 and a[10] == math.huge and a[11] == -math.huge)\n"
              "assert(a[12] ~= a[12])\n"
              "assert(math.type(a[13]) == 'float' and a[13] == 2^53)\n"
              "assert(a[14] == 'plain' and a[15] == 'a\\0b\\0' and #a[15] == 4 and a[16] == '')\n"
              "return true");
}

static void tables_keep_every_key_and_value(void **state)
{
    roundtrip(*state,
              "return { 1, 2, nil, 4, x = 'y', [true] = false, [2.5] = 'f', [-3] = 'neg',"
              " nested = { deeper = { 'z' } }, [10] = 'far' }",
              "local t = ...\n"
              "assert(t[1] == 1 and t[2] == 2 and t[3] == nil and t[4] == 4)\n"
              "assert(t.x == 'y' and t[true] == false and t[2.5] == 'f' and t[-3] == 'neg')\n"
              "assert(t.nested.deeper[1] == 'z' and t[10] == 'far')\n"
              "local n = 0 for _ in pairs(t) do n = n + 1 end\n"
              "assert(n == 9, n)\n"
              "return true");
}

static void a_table_referenced_twice_decodes_as_one_table(void **state)
{
    roundtrip(*state,
              "local s = { 'shared' } return { a = s, b = s }, s",
              "local t, s = ...\n"
              "assert(t.a == t.b and t.a == s and s[1] == 'shared')\n"
              "return true");
}

static void cycles_are_preserved(void **state)
{
    roundtrip(*state,
              "local t = { name = 't' } t.self = t local u = { t = t } t.u = u return t",
              "local t = ...\n"
              "assert(t.self == t and t.u.t == t and t.name == 't')\n"
              "return true");
}

/* Registers the global `name` of L's state as the metatable called name. */
static void register_global_metatable(struct side *side, const char *name)
{
    wire_err err;
    assert_int_equal(lua_getglobal(side->L, name), LUA_TTABLE);
    assert_int_equal(wire_codec_register_metatable(side->c, side->L, name, -1, &err), 0);
    lua_pop(side->L, 1);
}

static void registered_metatables_travel_and_come_back_as_the_hosts_own(void **state)
{
    struct pair *p = *state;
    run(p->host.L, "local P = { __index = { norm2 = function(s) return s.x * s.x + s.y * s.y end } }\n"
                   "P.__add = function(a, b) return setmetatable({ x = a.x + b.x, y = a.y + b.y }, P) end\n"
                   "Point = P");
    register_global_metatable(&p->host, "Point");
    int n = run(p->host.L, "return setmetatable({ x = 3, y = 4 }, Point), setmetatable({ x = 1, y = 1 }, Point)");
    assert_int_equal(ship(p, n, WIRE_ROOTS_VALUES), 2);
    /* On the worker: one copy of the metatable for both, methods working. */
    lua_State *W = p->worker.L;
    const char *work = "local a, b = ...\n"
                       "assert(getmetatable(a) == getmetatable(b), 'one copy per message')\n"
                       "assert(a:norm2() == 25)\n"
                       "return a + b";
    assert_int_equal(luaL_loadstring(W, work), LUA_OK);
    lua_insert(W, 1);
    if (lua_pcall(W, 2, 1, 0) != LUA_OK)
        fail_msg("worker code raised: %s", lua_tostring(W, -1));
    /* Back on the host: the host's own Point, not a copy. */
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->worker.c, W, -1, 1, WIRE_ROOTS_RESULTS, &p->buf, NULL, &p->err), 0);
    lua_pop(W, 1);
    assert_int_equal(wire_decode(p->host.c, p->host.L, p->buf.data, p->buf.len, &p->err), 1);
    lua_setglobal(p->host.L, "back");
    run(p->host.L, "assert(getmetatable(back) == Point, tostring(getmetatable(back)))\n"
                   "assert(back.x == 4 and back:norm2() == 41)");
}

static void a_metatable_name_unknown_to_the_host_is_dropped(void **state)
{
    struct pair *p = *state;
    /* Registered on the worker only: the host does not adopt it. */
    run(p->worker.L, "Local = { __index = { tag = 'local' } }");
    register_global_metatable(&p->worker, "Local");
    int n = run(p->worker.L, "return setmetatable({ 1 }, Local)");
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->worker.c, p->worker.L, -n, n, WIRE_ROOTS_RESULTS, &p->buf, NULL, &p->err), 0);
    lua_pop(p->worker.L, n);
    assert_int_equal(wire_decode(p->host.c, p->host.L, p->buf.data, p->buf.len, &p->err), 1);
    assert_int_equal(lua_getmetatable(p->host.L, -1), 0);
    lua_pop(p->host.L, 1);
}

static void bad_metatable_encodings_are_decode_errors(void **state)
{
    struct pair *p = *state;
    /* TAG_TABLE_MT (11): empty table, then a metatable value that is an integer. */
    static const uint8_t not_a_table[] = { 11, 0, 0, 3, 2 };
    /* TAG_CLASS (12): empty name; contents that are not a table; name cut short. */
    static const uint8_t empty_name[] = { 12, 0, 6, 0, 0 };
    static const uint8_t class_not_table[] = { 12, 1, 'M', 3, 2 };
    static const uint8_t cut_name[] = { 12, 5, 'M' };
    /* TAG_CLASS_NAME (13) of a name nobody registered. */
    static const uint8_t unknown_name[] = { 13, 5, 'G', 'h', 'o', 's', 't' };
    struct { const uint8_t *bytes; size_t len; const char *says; } cases[] = {
        { not_a_table, sizeof not_a_table, "a metatable is not a table" },
        { empty_name, sizeof empty_name, "metatable name is empty" },
        { class_not_table, sizeof class_not_table, "contents are not a table" },
        { cut_name, sizeof cut_name, "ends in the middle" },
        { unknown_name, sizeof unknown_name, "metatable 'Ghost' is not registered on this side" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(wire_decode(p->worker.c, p->worker.L, cases[i].bytes, cases[i].len, &p->err), -1);
        if (!strstr(p->err.msg, cases[i].says))
            fail_msg("case %zu: '%s' does not say '%s'", i, p->err.msg, cases[i].says);
        assert_int_equal(lua_gettop(p->worker.L), 0);
    }
}

static void an_instance_inside_its_own_class_keeps_the_class_as_metatable(void **state)
{
    struct pair *p = *state;
    /* The instance is met inside the class's contents, before the class
     * itself is finished: it must still get the class as its metatable. */
    run(p->host.L, "local C = { __index = { kind = 'c' } }\n"
                   "C.default = setmetatable({ v = 1 }, C)\n"
                   "C.self = C\n"
                   "Class = C");
    register_global_metatable(&p->host, "Class");
    int n = run(p->host.L, "return Class");
    assert_int_equal(ship(p, n, WIRE_ROOTS_VALUES), 1);
    check_on_worker(p, 1, "local C = ...\n"
                          "assert(C.self == C, 'self reference')\n"
                          "assert(getmetatable(C.default) == C, 'instance inside its class')\n"
                          "assert(C.default.kind == 'c' and C.default.v == 1)\n"
                          "return true");
}

static void a_class_sent_only_as_an_upvalue_comes_back_as_the_hosts_own(void **state)
{
    struct pair *p = *state;
    /* The usual constructor: no instance travels to the worker, only the class. */
    run(p->host.L, "local P = { __index = { twice = function(s) return 2 * s.x end } }\n"
                   "P.__index.class = P\n"
                   "Point = P\n"
                   "new_point = function(x) return setmetatable({ x = x }, P) end");
    register_global_metatable(&p->host, "Point");
    int n = run(p->host.L, "return new_point");
    assert_int_equal(ship(p, n, WIRE_ROOTS_VALUES), 1);
    lua_State *W = p->worker.L;
    lua_pushinteger(W, 21);
    if (lua_pcall(W, 1, 1, 0) != LUA_OK)
        fail_msg("worker code raised: %s", lua_tostring(W, -1));
    lua_pushvalue(W, -1);
    lua_setglobal(W, "made");
    run(W, "assert(made:twice() == 42 and made.class == getmetatable(made))");
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->worker.c, W, -1, 1, WIRE_ROOTS_RESULTS, &p->buf, NULL, &p->err), 0);
    lua_pop(W, 1);
    /* Back by name only: the host loads nothing the worker defined. */
    assert_null(memmem(p->buf.data, p->buf.len, "twice", 5));
    assert_int_equal(wire_decode(p->host.c, p->host.L, p->buf.data, p->buf.len, &p->err), 1);
    lua_setglobal(p->host.L, "back");
    run(p->host.L, "assert(getmetatable(back) == Point and back.class == Point and back:twice() == 42)");
}

static void what_a_registered_metatable_holds_is_refused_with_its_path(void **state)
{
    struct pair *p = *state;
    run(p->host.L, "Conn = { __index = { co = coroutine.create(print) } }");
    register_global_metatable(&p->host, "Conn");
    int n = run(p->host.L, "return 1, setmetatable({}, Conn)");
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->host.c, p->host.L, -n, n, WIRE_ROOTS_VALUES, &p->buf, NULL, &p->err), -1);
    assert_string_equal(p->err.msg, "value 2 metatable field '__index' field 'co' (a thread) cannot be sent");
    assert_int_equal(p->buf.len, 0);
    lua_pop(p->host.L, n);
}

static void unregistered_metatables_are_dropped(void **state)
{
    roundtrip(*state,
              "return setmetatable({ 1 }, { __index = function() return 'meta' end,"
              " __len = function() return 99 end })",
              "local t = ...\n"
              "assert(getmetatable(t) == nil and t.missing == nil and #t == 1)\n"
              "return true");
}

static void closures_run_with_their_upvalues_after_decode(void **state)
{
    roundtrip(*state,
              "local k, name = 10, 'ten' local tbl = { 1, 2, 3 }\n"
              "return function(x) return x + k + #tbl, name end",
              "local f = ...\n"
              "local a, b = f(5)\n"
              "assert(a == 18 and b == 'ten', tostring(a))\n"
              "return true");
}

static void recursive_local_functions_work_after_decode(void **state)
{
    roundtrip(*state,
              "local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
              "return fib",
              "local fib = ...\n"
              "assert(fib(20) == 6765)\n"
              "return true");
}

static void mutually_recursive_functions_work_after_decode(void **state)
{
    roundtrip(*state,
              "local is_even, is_odd\n"
              "function is_even(n) if n == 0 then return true end return is_odd(n - 1) end\n"
              "function is_odd(n) if n == 0 then return false end return is_even(n - 1) end\n"
              "return is_even",
              "local is_even = ...\n"
              "assert(is_even(10) == true and is_even(7) == false)\n"
              "return true");
}

static void nested_functions_travel_with_their_own_upvalues(void **state)
{
    roundtrip(*state,
              "local base = 100\n"
              "local function adder(n) return function(x) return x + n + base end end\n"
              "local add5 = adder(5)\n"
              "return function(x) return add5(x) * 2 end, adder",
              "local f, adder = ...\n"
              "assert(f(1) == 212)\n"
              "assert(adder(1)(1) == 102)\n"
              "return true");
}

static void the_global_table_becomes_the_receivers_globals(void **state)
{
    struct pair *p = *state;
    run(p->worker.L, "answer = 42");
    roundtrip(p,
              "answer = 'host' local G = _G\n"
              "return function() return answer, G.answer end, _G",
              "local f, G = ...\n"
              "local a, b = f()\n"
              "assert(a == 42 and b == 42 and G == _G)\n"
              "return true");
}

static void standard_library_values_are_sent_by_name(void **state)
{
    struct pair *p = *state;
    int n = run(p->host.L, "local fmt, m, out, pr = string.format, math, io.stdout, print\n"
                           "return function() return fmt, m, out, pr end, io.write, table");
    /* Names are short: the whole encoding is far smaller than any table dump. */
    int got = ship(p, n, WIRE_ROOTS_VALUES);
    assert_int_equal(got, 3);
    check_on_worker(p, got,
                    "local f, w, t = ...\n"
                    "local fmt, m, out, pr = f()\n"
                    "assert(fmt == string.format and m == math and out == io.stdout and pr == print)\n"
                    "assert(w == io.write and t == table)\n"
                    "return true");
}

static void a_name_missing_on_the_receiver_is_a_decode_error_naming_it(void **state)
{
    struct pair *p = *state;
    /* A C function known on the host only as part of its `sky` module. */
    lua_pushcfunction(p->host.L, luaopen_base);
    lua_setglobal(p->host.L, "probe");
    run(p->host.L, "package.loaded.sky = { probe = probe }");
    int n = run(p->host.L, "local pr = package.loaded.sky.probe return function() return pr end");
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->host.c, p->host.L, -1, 1, WIRE_ROOTS_VALUES, &p->buf,
                                 &p->protos, &p->err), 0);
    lua_pop(p->host.L, n);
    define_all(p);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "library value 'sky.probe' does not exist on this side"));
    assert_int_equal(lua_gettop(p->worker.L), 0);
}

/* Encoding must fail with exactly this message and leave the buffer as it was. */
static void expect_refusal(struct pair *p, const char *make, enum wire_roots roots, const char *msg)
{
    lua_State *H = p->host.L;
    int n = run(H, make);
    sky_buf_reset(&p->buf);
    sky_buf_append_str(&p->buf, "prefix");
    int top = lua_gettop(H);
    assert_int_equal(wire_encode(p->host.c, H, -n, n, roots, &p->buf, &p->protos, &p->err), -1);
    assert_string_equal(p->err.msg, msg);
    assert_int_equal(p->buf.len, 6);
    assert_int_equal(lua_gettop(H), top);
    lua_pop(H, n);
}

static void unsendable_values_are_refused_with_their_path(void **state)
{
    struct pair *p = *state;
    expect_refusal(p, "local conn = io.tmpfile() return function() return conn end",
                   WIRE_ROOTS_CALL, "upvalue 'conn' (a userdata) cannot be sent");
    expect_refusal(p, "return function() end, io.tmpfile()", WIRE_ROOTS_CALL,
                   "argument 1 (a userdata) cannot be sent");
}

static void refusals_name_the_path_through_tables_and_functions(void **state)
{
    struct pair *p = *state;
    lua_pushcfunction(p->host.L, luaopen_base);
    lua_setglobal(p->host.L, "cfn");
    expect_refusal(p, "return function() end, 1, { cb = cfn }", WIRE_ROOTS_CALL,
                   "argument 2 field 'cb' (a C function) cannot be sent");
    expect_refusal(p,
                   "local y = coroutine.create(print)\n"
                   "local cfg = { x = function() return y end }\n"
                   "return function() return cfg end",
                   WIRE_ROOTS_CALL, "upvalue 'cfg' field 'x' upvalue 'y' (a thread) cannot be sent");
    expect_refusal(p, "return 1, { [3] = { f = io.tmpfile() } }", WIRE_ROOTS_RESULTS,
                   "result 2 [3] field 'f' (a userdata) cannot be sent");
    expect_refusal(p, "return cfn", WIRE_ROOTS_CALL, "function (a C function) cannot be sent");
    expect_refusal(p, "return { [io.tmpfile()] = 1 }", WIRE_ROOTS_VALUES,
                   "value 1 key (a userdata) cannot be sent");
}

static void nesting_deeper_than_the_limit_is_refused_both_ways(void **state)
{
    struct pair *p = *state;
    lua_State *H = p->host.L;
    run(H, "local t = {} for i = 1, 300 do t = { t } end deep = t");
    lua_getglobal(H, "deep");
    assert_int_equal(wire_encode(p->host.c, H, -1, 1, WIRE_ROOTS_VALUES, &p->buf, NULL, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "nested more than 200"));
    lua_pop(H, 1);
    /* Hand-made: 300 nested one-element tables. */
    sky_buf_reset(&p->buf);
    for (int i = 0; i < 300; i++) {
        sky_buf_append_byte(&p->buf, 6);
        sky_buf_append_byte(&p->buf, 1);
        sky_buf_append_byte(&p->buf, 0);
    }
    sky_buf_append_byte(&p->buf, 0);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "nested more than 200"));
    assert_int_equal(lua_gettop(p->worker.L), 0);
}

static void a_closure_sent_many_times_is_dumped_once(void **state)
{
    struct pair *p = *state;
    lua_State *H = p->host.L;
    run(H, "local k = 1 return function(x) return x + k end");
    size_t before = wire_codec_dump_count(p->host.c);
    for (int i = 0; i < 100000; i++) {
        sky_buf_reset(&p->buf);
        assert_int_equal(wire_encode(p->host.c, H, -1, 1, WIRE_ROOTS_VALUES, &p->buf, NULL, &p->err), 0);
    }
    assert_int_equal(wire_codec_dump_count(p->host.c) - before, 1);
    lua_pop(H, 1);
}

static void an_encoding_lists_each_prototype_once_in_first_use_order(void **state)
{
    struct pair *p = *state;
    lua_State *H = p->host.L;
    run(H, "local function g() return 1 end\n"
           "local function f() return g() + g() end\n"
           "return f, g, f");
    p->protos.n = 0;
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->host.c, H, -3, 3, WIRE_ROOTS_VALUES, &p->buf, &p->protos, &p->err), 0);
    assert_int_equal(p->protos.n, 2);
    assert_memory_not_equal(p->protos.v[0].b, p->protos.v[1].b, 16);
    lua_pop(H, 3);
}

static void an_unknown_prototype_is_a_decode_error(void **state)
{
    struct pair *p = *state;
    lua_State *H = p->host.L;
    run(H, "return function() return 1 end");
    sky_buf_reset(&p->buf);
    assert_int_equal(wire_encode(p->host.c, H, -1, 1, WIRE_ROOTS_VALUES, &p->buf, NULL, &p->err), 0);
    lua_pop(H, 1);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "unknown function prototype"));
    assert_int_equal(lua_gettop(p->worker.L), 0);
}

static void define_refuses_bytecode_that_does_not_match_its_hash(void **state)
{
    struct pair *p = *state;
    wire_hash h;
    memset(&h, 7, sizeof h);
    const uint8_t code[] = "\x1bLua fake";
    assert_int_equal(wire_codec_define(p->worker.c, &h, code, sizeof code - 1, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "does not hash"));
    wire_hash_bytes("print(1)", 8, &h);
    assert_int_equal(wire_codec_define(p->worker.c, &h, (const uint8_t *)"print(1)", 8, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "not a Lua binary chunk"));
}

static void debug_info_is_kept_only_when_asked(void **state)
{
    struct pair *p = *state;
    /* The host codec keeps debug info: errors name the line. */
    int n = run(p->host.L, "return load('local x = nil\\nreturn function() return x.y end', '=chunk')()");
    ship(p, n, WIRE_ROOTS_VALUES);
    assert_int_not_equal(lua_pcall(p->worker.L, 0, 0, 0), LUA_OK);
    assert_non_null(strstr(lua_tostring(p->worker.L, -1), "chunk:2:"));
    lua_pop(p->worker.L, 1);
    /* The worker codec strips: sent back the other way, the line is gone. */
    wire_codec *stripper = wire_codec_new(p->host.L, 0);
    run(p->host.L, "return load('local x = nil\\nreturn function() return x.z end', '=chunk2')()");
    sky_buf_reset(&p->buf);
    p->protos.n = 0;
    assert_int_equal(wire_encode(stripper, p->host.L, -1, 1, WIRE_ROOTS_VALUES, &p->buf, &p->protos, &p->err), 0);
    lua_pop(p->host.L, 1);
    size_t len;
    const uint8_t *code = wire_codec_bytecode(stripper, &p->protos.v[0], &len);
    assert_int_equal(wire_codec_define(p->worker.c, &p->protos.v[0], code, len, &p->err), 0);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err), 1);
    assert_int_not_equal(lua_pcall(p->worker.L, 0, 0, 0), LUA_OK);
    assert_null(strstr(lua_tostring(p->worker.L, -1), "chunk2:2:"));
    lua_pop(p->worker.L, 1);
    wire_codec_free(stripper);
}

/* Encodes a rich sample (every tag) for the robustness tests. */
static void encode_sample(struct pair *p)
{
    int n = run(p->host.L,
                "local s = { 'shared', 1.5 } local fmt = string.format\n"
                "local function fib(n) if n < 2 then return n end return fib(n-1) + fib(n-2) end\n"
                "local t = { s, s, x = { y = { z = 'deep\\0' } }, [true] = -7, f = fib, g = _G }\n"
                "t.self = t\n"
                "return nil, true, false, 123456789, -2.25, 'str', t,"
                " function() return fmt, fib, t end, math");
    sky_buf_reset(&p->buf);
    p->protos.n = 0;
    assert_int_equal(wire_encode(p->host.c, p->host.L, -n, n, WIRE_ROOTS_VALUES, &p->buf, &p->protos, &p->err), 0);
    lua_pop(p->host.L, n);
    define_all(p);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, p->buf.data, p->buf.len, &p->err), n);
    lua_settop(p->worker.L, 0);
}

static void every_truncation_of_an_encoding_is_an_error_with_nothing_pushed(void **state)
{
    struct pair *p = *state;
    encode_sample(p);
    /* A prefix that ends exactly between two top-level values is a valid,
     * shorter list; every other prefix must fail. */
    int boundaries = 0;
    for (size_t len = 0; len < p->buf.len; len++) {
        int rc = wire_decode(p->worker.c, p->worker.L, p->buf.data, len, &p->err);
        if (rc >= 0) {
            boundaries++;
            lua_settop(p->worker.L, 0);
        } else {
            assert_int_equal(lua_gettop(p->worker.L), 0);
            assert_true(p->err.msg[0] != 0);
        }
    }
    assert_true(boundaries <= 9);
}

static void bit_flips_never_crash_and_leave_the_stack_balanced(void **state)
{
    struct pair *p = *state;
    encode_sample(p);
    uint8_t *copy = malloc(p->buf.len);
    for (size_t i = 0; i < p->buf.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, p->buf.data, p->buf.len);
            copy[i] ^= (uint8_t)(1u << bit);
            int rc = wire_decode(p->worker.c, p->worker.L, copy, p->buf.len, &p->err);
            if (rc >= 0)
                assert_int_equal(lua_gettop(p->worker.L), rc);
            else
                assert_int_equal(lua_gettop(p->worker.L), 0);
            lua_settop(p->worker.L, 0);
        }
    }
    free(copy);
}

static void huge_counts_are_refused_without_allocating(void **state)
{
    struct pair *p = *state;
    /* table claiming 2^40 array items, string claiming 2^60 bytes, back-reference to nothing */
    const uint8_t table[] = { 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0 };
    const uint8_t str[] = { 5, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 'a' };
    const uint8_t ref[] = { 7, 0 };
    const uint8_t tag[] = { 0x7f };
    const uint8_t nilkey[] = { 6, 0, 1, 0, 2 };
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, table, sizeof table, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "more than the input can hold"));
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, str, sizeof str, &p->err), -1);
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, ref, sizeof ref, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "back-reference"));
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, tag, sizeof tag, &p->err), -1);
    assert_string_equal(p->err.msg, "bad encoded value at byte 0: unknown value tag 127");
    assert_int_equal(wire_decode(p->worker.c, p->worker.L, nilkey, sizeof nilkey, &p->err), -1);
    assert_non_null(strstr(p->err.msg, "table key is nil"));
    assert_int_equal(lua_gettop(p->worker.L), 0);
}

static void pure_functions_decode_to_a_working_closure_every_time(void **state)
{
    struct pair *p = *state;
    for (int i = 0; i < 3; i++) {
        int n = run(p->host.L, "local fmt = string.format return function(x) return fmt('%d!', x) end");
        int got = ship(p, n, WIRE_ROOTS_VALUES);
        check_on_worker(p, got, "local f = ... return f(7) == '7!'");
    }
}

static int make_codec_in_coroutine(lua_State *co)
{
    wire_codec **out = lua_touserdata(co, 1);
    *out = wire_codec_new(co, 0);
    return 0;
}

static void a_codec_made_inside_a_coroutine_outlives_the_coroutine(void **state)
{
    (void)state;
    lua_State *L = new_state();
    wire_codec *c = NULL;
    lua_State *co = lua_newthread(L);
    lua_pushcfunction(co, make_codec_in_coroutine);
    lua_pushlightuserdata(co, &c);
    int nres;
    assert_int_equal(lua_resume(co, L, 1, &nres), LUA_OK);
    lua_pop(L, 1);                       /* drop the coroutine */
    lua_gc(L, LUA_GCCOLLECT);
    run(L, "return function() return 1 end");
    wire_hashes protos = { 0 };
    sky_buf out = SKY_BUF_INIT;
    wire_err err;
    assert_int_equal(wire_encode(c, L, -1, 1, WIRE_ROOTS_VALUES, &out, &protos, &err), 0);
    size_t len;
    assert_non_null(wire_codec_bytecode(c, &protos.v[0], &len));
    assert_int_equal(wire_codec_define(c, &protos.v[0], wire_codec_bytecode(c, &protos.v[0], &len), len, &err), 0);
    wire_hashes_free(&protos);
    sky_buf_free(&out);
    wire_codec_free(c);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(scalars_keep_their_type_and_value),
        T(tables_keep_every_key_and_value),
        T(a_table_referenced_twice_decodes_as_one_table),
        T(cycles_are_preserved),
        T(unregistered_metatables_are_dropped),
        T(registered_metatables_travel_and_come_back_as_the_hosts_own),
        T(a_metatable_name_unknown_to_the_host_is_dropped),
        T(bad_metatable_encodings_are_decode_errors),
        T(a_class_sent_only_as_an_upvalue_comes_back_as_the_hosts_own),
        T(an_instance_inside_its_own_class_keeps_the_class_as_metatable),
        T(what_a_registered_metatable_holds_is_refused_with_its_path),
        T(closures_run_with_their_upvalues_after_decode),
        T(recursive_local_functions_work_after_decode),
        T(mutually_recursive_functions_work_after_decode),
        T(nested_functions_travel_with_their_own_upvalues),
        T(the_global_table_becomes_the_receivers_globals),
        T(standard_library_values_are_sent_by_name),
        T(a_name_missing_on_the_receiver_is_a_decode_error_naming_it),
        T(unsendable_values_are_refused_with_their_path),
        T(refusals_name_the_path_through_tables_and_functions),
        T(nesting_deeper_than_the_limit_is_refused_both_ways),
        T(a_closure_sent_many_times_is_dumped_once),
        T(an_encoding_lists_each_prototype_once_in_first_use_order),
        T(an_unknown_prototype_is_a_decode_error),
        T(define_refuses_bytecode_that_does_not_match_its_hash),
        T(debug_info_is_kept_only_when_asked),
        T(every_truncation_of_an_encoding_is_an_error_with_nothing_pushed),
        T(bit_flips_never_crash_and_leave_the_stack_balanced),
        T(huge_counts_are_refused_without_allocating),
        T(pure_functions_decode_to_a_working_closure_every_time),
        T(a_codec_made_inside_a_coroutine_outlives_the_coroutine),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
