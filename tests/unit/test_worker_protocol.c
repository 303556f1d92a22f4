/*
 * test_worker_protocol: the real skyrun-worker (SKYRUN_WORKER), spoken to
 * over pipes with the wire functions, as a host would.
 *
 * Every wait is bounded (a hang becomes a failure, not a stuck test); no
 * assertion depends on how fast anything runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire/wire.h"

#define WAIT_MS 20000   /* hang guard for one frame or one exit */

struct worker {
    pid_t pid;
    int to_fd, from_fd, err_fd;
    sky_buf in, scratch, body;
    lua_State *L;          /* the host side */
    wire_codec *codec;
    wire_err err;
    wire_frame f;          /* the last frame read */
    sky_buf frame_body;    /* its body, copied */
};

static void spawn(struct worker *w)
{
    const char *path = getenv("SKYRUN_WORKER");
    if (!path)
        fail_msg("SKYRUN_WORKER is not set");
    int to[2], from[2], err[2];
    assert_int_equal(pipe2(to, O_CLOEXEC), 0);
    assert_int_equal(pipe2(from, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    w->pid = fork();
    assert_true(w->pid >= 0);
    if (w->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        dup2(err[1], 2);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    close(err[1]);
    w->to_fd = to[1];
    w->from_fd = from[0];
    w->err_fd = err[0];
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct worker *w = calloc(1, sizeof *w);
    w->L = luaL_newstate();
    luaL_openlibs(w->L);
    w->codec = wire_codec_new(w->L, WIRE_CODEC_KEEP_DEBUG);
    spawn(w);
    *state = w;
    return 0;
}

/* Reaps the worker (killing it if a test left it running). */
static int reap(struct worker *w, int wait_ms)
{
    int status;
    for (int waited = 0; waited < wait_ms; waited += 10) {
        if (waitpid(w->pid, &status, WNOHANG) == w->pid)
            return status;
        usleep(10000);
    }
    kill(w->pid, SIGKILL);
    waitpid(w->pid, &status, 0);
    return -1;
}

static int teardown(void **state)
{
    struct worker *w = *state;
    if (w->to_fd >= 0)
        close(w->to_fd);
    if (w->pid > 0)
        reap(w, WAIT_MS);
    close(w->from_fd);
    close(w->err_fd);
    wire_codec_free(w->codec);
    lua_close(w->L);
    sky_buf_free(&w->in);
    sky_buf_free(&w->scratch);
    sky_buf_free(&w->body);
    sky_buf_free(&w->frame_body);
    free(w);
    return 0;
}

static void send_bytes(struct worker *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = write(w->to_fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        assert_true(k > 0);
        b += k;
        n -= (size_t)k;
    }
}

static void send_frame(struct worker *w, uint8_t type, const void *body, size_t len)
{
    sky_buf out = SKY_BUF_INIT;
    wire_frame_append(&out, type, body, len);
    send_bytes(w, out.data, out.len);
    sky_buf_free(&out);
}

/* Reads the next frame into w->f (body copied into w->frame_body). */
static void read_frame(struct worker *w)
{
    for (;;) {
        size_t used;
        int rc = wire_frame_next(w->in.data, w->in.len, &w->scratch, &w->f, &used, &w->err);
        if (rc == WIRE_EBAD)
            fail_msg("worker sent a bad frame: %s", w->err.msg);
        if (rc == WIRE_OK) {
            sky_buf_reset(&w->frame_body);
            sky_buf_append(&w->frame_body, w->f.body, w->f.len);
            w->f.body = w->frame_body.data;
            sky_buf_consume(&w->in, used);
            return;
        }
        struct pollfd p = { .fd = w->from_fd, .events = POLLIN };
        if (poll(&p, 1, WAIT_MS) != 1)
            fail_msg("no frame from the worker within %d ms", WAIT_MS);
        sky_buf_reserve(&w->in, 65536);
        ssize_t n = read(w->from_fd, w->in.data + w->in.len, w->in.cap - w->in.len);
        if (n <= 0)
            fail_msg("the worker closed its output");
        w->in.len += (size_t)n;
    }
}

/* Reads HELLO and decodes its facts table onto the host stack. */
static void read_hello(struct worker *w)
{
    read_frame(w);
    assert_int_equal(w->f.type, WIRE_HELLO);
    const uint8_t *facts;
    size_t facts_len;
    assert_int_equal(wire_hello_parse(w->f.body, w->f.len, &facts, &facts_len, &w->err), WIRE_OK);
    assert_int_equal(wire_decode(w->codec, w->L, facts, facts_len, &w->err), 1);
}

static void send_setup(struct worker *w, const char *table_code)
{
    if (luaL_dostring(w->L, table_code) != LUA_OK)
        fail_msg("%s", lua_tostring(w->L, -1));
    sky_buf_reset(&w->body);
    assert_int_equal(wire_encode(w->codec, w->L, -1, 1, WIRE_ROOTS_VALUES, &w->body, NULL, &w->err), 0);
    lua_pop(w->L, 1);
    send_frame(w, WIRE_SETUP, w->body.data, w->body.len);
}

/* A worker that has said HELLO and been set up as a lone worker. */
static void start(struct worker *w)
{
    read_hello(w);
    lua_pop(w->L, 1);
    send_setup(w, "return { node = 0, nodes = 1, worker = 0, workers = 1, heartbeat = 0 }");
}

/* Evaluates `code` on the host (it returns a function and its arguments)
 * and sends DEFINEs and the CALL. */
static void send_call(struct worker *w, uint64_t id, double timeout, const char *code)
{
    lua_State *L = w->L;
    int top = lua_gettop(L);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    int n = lua_gettop(L) - top;
    wire_hashes protos = { 0 };
    sky_buf values = SKY_BUF_INIT;
    if (wire_encode(w->codec, L, top + 1, n, WIRE_ROOTS_CALL, &values, &protos, &w->err) != 0)
        fail_msg("encode: %s", w->err.msg);
    lua_settop(L, top);
    for (size_t i = 0; i < protos.n; i++) {
        size_t len;
        const uint8_t *bc = wire_codec_bytecode(w->codec, &protos.v[i], &len);
        sky_buf_reset(&w->body);
        wire_define_append(&w->body, &protos.v[i], bc, len);
        send_frame(w, WIRE_DEFINE, w->body.data, w->body.len);
    }
    sky_buf_reset(&w->body);
    wire_call_header(&w->body, id, timeout);
    sky_buf_append(&w->body, values.data, values.len);
    send_frame(w, WIRE_CALL, w->body.data, w->body.len);
    wire_hashes_free(&protos);
    sky_buf_free(&values);
}

/* Reads frames until the RESULT of `id`, collecting OUTPUT text; pushes
 * the results and returns how many. */
static int expect_result(struct worker *w, uint64_t id, sky_buf *output)
{
    for (;;) {
        read_frame(w);
        if (w->f.type == WIRE_OUTPUT) {
            uint8_t stream;
            const uint8_t *bytes;
            size_t n;
            assert_int_equal(wire_output_parse(w->f.body, w->f.len, &stream, &bytes, &n, &w->err), WIRE_OK);
            if (output)
                sky_buf_append(output, bytes, n);
            continue;
        }
        if (w->f.type == WIRE_ERROR) {
            uint64_t eid;
            uint8_t kind;
            const char *msg, *tb;
            size_t ml, tl;
            wire_error_parse(w->f.body, w->f.len, &eid, &kind, &msg, &ml, &tb, &tl, &w->err);
            fail_msg("expected RESULT, got ERROR kind %u: %.*s", kind, (int)ml, msg);
        }
        assert_int_equal(w->f.type, WIRE_RESULT);
        uint64_t rid;
        const uint8_t *values;
        size_t len;
        assert_int_equal(wire_result_parse(w->f.body, w->f.len, &rid, &values, &len, &w->err), WIRE_OK);
        assert_int_equal(rid, id);
        int n = wire_decode(w->codec, w->L, values, len, &w->err);
        if (n < 0)
            fail_msg("decode results: %s", w->err.msg);
        return n;
    }
}

struct remote_error {
    uint8_t kind;
    char msg[512], tb[2048];
};

static void expect_error(struct worker *w, uint64_t id, struct remote_error *e)
{
    do
        read_frame(w);
    while (w->f.type == WIRE_OUTPUT);
    assert_int_equal(w->f.type, WIRE_ERROR);
    uint64_t eid;
    const char *msg, *tb;
    size_t ml, tl;
    assert_int_equal(wire_error_parse(w->f.body, w->f.len, &eid, &e->kind, &msg, &ml, &tb, &tl, &w->err), WIRE_OK);
    assert_int_equal(eid, id);
    snprintf(e->msg, sizeof e->msg, "%.*s", (int)ml, msg);
    snprintf(e->tb, sizeof e->tb, "%.*s", (int)tl, tb);
}

/* Runs a Lua check on the host with the values on the stack as arguments. */
static void check_host(struct worker *w, int n, const char *check)
{
    lua_State *L = w->L;
    if (luaL_loadstring(L, check) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    lua_insert(L, -n - 1);
    if (lua_pcall(L, n, 1, 0) != LUA_OK)
        fail_msg("check raised: %s", lua_tostring(L, -1));
    assert_true(lua_toboolean(L, -1));
    lua_pop(L, 1);
}

static void read_stderr(struct worker *w, char *buf, size_t cap)
{
    size_t len = 0;
    struct pollfd p = { .fd = w->err_fd, .events = POLLIN };
    while (len + 1 < cap && poll(&p, 1, WAIT_MS) == 1) {
        ssize_t n = read(w->err_fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void hello_reports_the_nodes_facts(void **state)
{
    struct worker *w = *state;
    read_hello(w);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    lua_pushstring(w->L, host);
    lua_pushinteger(w->L, w->pid);
    check_host(w, 3,
               "local f, host, pid = ...\n"
               "assert(f.hostname == host and f.pid == pid)\n"
               "assert(math.type(f.cores) == 'integer' and f.cores >= 1)\n"
               "assert(math.type(f.memory) == 'integer' and f.memory > 1024 * 1024)\n"
               "assert(type(f.accelerators) == 'table')\n"
               "for _, a in ipairs(f.accelerators) do assert(type(a.name) == 'string') end\n"
               "assert(f.lua == '" LUA_RELEASE "')\n"
               "return true");
}

static void a_call_returns_all_its_results(void **state)
{
    struct worker *w = *state;
    start(w);
    send_call(w, 7, 0, "return function(a, b) return a + b, 'two', nil, { 3 } end, 40, 2");
    int n = expect_result(w, 7, NULL);
    assert_int_equal(n, 4);
    check_host(w, n, "local a, b, c, d = ... return a == 42 and math.type(a) == 'integer'"
                     " and b == 'two' and c == nil and d[1] == 3");
}

static void a_closure_runs_with_its_upvalues(void **state)
{
    struct worker *w = *state;
    start(w);
    send_call(w, 1, 0, "local k, names = 5, { 'a', 'b' }\n"
                       "local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end\n"
                       "return function(x) return x * k .. names[2], fact(10) end, 3");
    int n = expect_result(w, 1, NULL);
    assert_int_equal(n, 2);
    check_host(w, n, "local s, f = ... return s == '15b' and f == 3628800");
}

static void printed_output_arrives_before_the_result(void **state)
{
    struct worker *w = *state;
    start(w);
    sky_buf out = SKY_BUF_INIT;
    send_call(w, 2, 0, "return function() print('hello', 1) io.write('partial') io.stdout:write('x\\n')\n"
                       " os.execute('echo from-child') io.write('tail') return 'done' end");
    int n = expect_result(w, 2, &out);
    assert_int_equal(n, 1);
    check_host(w, n, "return ... == 'done'");
    assert_string_equal(sky_buf_cstr(&out), "hello\t1\npartialx\nfrom-child\ntail");
    sky_buf_free(&out);
}

static void output_streams_while_the_call_is_still_running(void **state)
{
    struct worker *w = *state;
    start(w);
    char flag[] = "/tmp/skyrun-test-flag-XXXXXX";
    int fd = mkstemp(flag);
    assert_true(fd >= 0);
    close(fd);
    unlink(flag);
    char code[512];
    snprintf(code, sizeof code,
             "return function(path) print('started')\n"
             " for i = 1, 2000 do local f = io.open(path) if f then f:close() return 'saw it' end\n"
             "  os.execute('sleep 0.01') end return 'gave up' end, '%s'", flag);
    send_call(w, 3, 0, code);
    /* The line must arrive while the worker is still waiting for the flag. */
    read_frame(w);
    assert_int_equal(w->f.type, WIRE_OUTPUT);
    assert_memory_equal(w->f.body + 1, "started\n", 8);
    FILE *f = fopen(flag, "w");
    fclose(f);
    int n = expect_result(w, 3, NULL);
    check_host(w, n, "return ... == 'saw it'");
    unlink(flag);
}

static void a_user_error_comes_back_with_message_and_traceback(void **state)
{
    struct worker *w = *state;
    struct remote_error e;
    start(w);
    send_call(w, 4, 0, "local function inner() error('boom') end\n"
                       "return function() inner() end");
    expect_error(w, 4, &e);
    assert_int_equal(e.kind, WIRE_ERR_USER);
    assert_non_null(strstr(e.msg, "boom"));
    assert_non_null(strstr(e.tb, "stack traceback"));
    assert_non_null(strstr(e.tb, "inner"));
    send_call(w, 5, 0, "return function() error(setmetatable({}, { __tostring = function() return 'custom' end })) end");
    expect_error(w, 5, &e);
    assert_string_equal(e.msg, "custom");
}

static void a_call_past_its_timeout_is_stopped(void **state)
{
    struct worker *w = *state;
    struct remote_error e;
    start(w);
    /* The inner pcall must not be able to swallow the timeout. */
    send_call(w, 6, 0.2, "return function() while true do pcall(function() while true do end end) end end");
    expect_error(w, 6, &e);
    assert_int_equal(e.kind, WIRE_ERR_TIMEOUT);
    assert_string_equal(e.msg, "call timed out after 0.2 s");
    /* The worker is still usable afterwards. */
    send_call(w, 7, 0, "return function() return 'alive' end");
    int n = expect_result(w, 7, NULL);
    check_host(w, n, "return ... == 'alive'");
}

static void a_result_that_cannot_be_sent_is_an_error_naming_it(void **state)
{
    struct worker *w = *state;
    struct remote_error e;
    start(w);
    send_call(w, 8, 0, "return function() return 1, { f = coroutine.create(print) } end");
    expect_error(w, 8, &e);
    assert_int_equal(e.kind, WIRE_ERR_USER);
    assert_string_equal(e.msg, "result 2 field 'f' (a thread) cannot be sent");
}

static void a_call_to_an_undefined_prototype_is_a_decode_error(void **state)
{
    struct worker *w = *state;
    start(w);
    /* Encode a call, but send it without its DEFINE. */
    luaL_dostring(w->L, "return function() return 1 end");
    sky_buf_reset(&w->body);
    wire_call_header(&w->body, 9, 0);
    assert_int_equal(wire_encode(w->codec, w->L, -1, 1, WIRE_ROOTS_CALL, &w->body, NULL, &w->err), 0);
    lua_pop(w->L, 1);
    send_frame(w, WIRE_CALL, w->body.data, w->body.len);
    struct remote_error e;
    expect_error(w, 9, &e);
    assert_int_equal(e.kind, WIRE_ERR_DECODE);
    assert_non_null(strstr(e.msg, "unknown function prototype"));
}

static void pipelined_calls_are_answered_in_order(void **state)
{
    struct worker *w = *state;
    start(w);
    for (uint64_t id = 100; id < 1100; id++) {
        char code[64];
        snprintf(code, sizeof code, "return function(x) return x * 2 end, %llu", (unsigned long long)id);
        send_call(w, id, 0, code);
    }
    for (uint64_t id = 100; id < 1100; id++) {
        assert_int_equal(expect_result(w, id, NULL), 1);
        assert_int_equal(lua_tointeger(w->L, -1), (lua_Integer)id * 2);
        lua_pop(w->L, 1);
    }
}

static void instance_info_and_shard_follow_setup(void **state)
{
    struct worker *w = *state;
    read_hello(w);
    lua_pop(w->L, 1);
    send_setup(w, "return { node = 1, nodes = 3, worker = 1, workers = 2, heartbeat = 0, node_name = 'n1' }");
    send_call(w, 10, 0, "return function(list) local i = sky.instance_info()\n"
                        " return i, sky.shard(list), sky.shard(list, { by = 'worker' }) end,"
                        " { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }");
    int n = expect_result(w, 10, NULL);
    assert_int_equal(n, 3);
    check_host(w, n, "local i, by_node, by_worker = ...\n"
                     "assert(i.node == 1 and i.nodes == 3 and i.worker == 1 and i.workers == 2)\n"
                     "assert(type(i.hostname) == 'string' and i.pid > 0 and i.cores >= 1 and i.memory > 0)\n"
                     "assert(type(i.accelerators) == 'table' and i.node_name == 'n1')\n"
                     "assert(table.concat(by_node, ',') == '4,5,6', table.concat(by_node, ','))\n"
                     "assert(table.concat(by_worker, ',') == '6', table.concat(by_worker, ','))\n"
                     "return true");
}

static void package_path_from_setup_reaches_require(void **state)
{
    struct worker *w = *state;
    char dir[] = "/tmp/skyrun-test-mod-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/shipped_mod.lua", dir);
    FILE *f = fopen(path, "w");
    fputs("return { answer = 42 }\n", f);
    fclose(f);
    read_hello(w);
    lua_pop(w->L, 1);
    char setup_code[256];
    snprintf(setup_code, sizeof setup_code, "return { package_path = '%s/?.lua' }", dir);
    send_setup(w, setup_code);
    send_call(w, 11, 0, "return function() return require('shipped_mod').answer end");
    int n = expect_result(w, 11, NULL);
    check_host(w, n, "return ... == 42");
    unlink(path);
    rmdir(dir);
}

static void a_malformed_frame_makes_the_worker_exit_with_a_diagnostic(void **state)
{
    struct worker *w = *state;
    start(w);
    const uint8_t bad[] = { 0, 0, 0, 0, 99, 0 };
    send_bytes(w, bad, sizeof bad);
    int status = reap(w, WAIT_MS);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char msg[1024];
    read_stderr(w, msg, sizeof msg);
    assert_non_null(strstr(msg, "malformed frame from host"));
    assert_non_null(strstr(msg, "unknown frame type 99"));
}

static void end_of_input_makes_the_worker_exit_cleanly(void **state)
{
    struct worker *w = *state;
    start(w);
    close(w->to_fd);
    w->to_fd = -1;
    int status = reap(w, WAIT_MS);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void bye_makes_the_worker_exit_cleanly(void **state)
{
    struct worker *w = *state;
    start(w);
    send_frame(w, WIRE_BYE, NULL, 0);
    int status = reap(w, WAIT_MS);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void a_silent_host_past_the_heartbeat_makes_the_worker_exit(void **state)
{
    struct worker *w = *state;
    read_hello(w);
    lua_pop(w->L, 1);
    send_setup(w, "return { heartbeat = 0.2 }");
    int status = reap(w, WAIT_MS);
    w->pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(hello_reports_the_nodes_facts),
        T(a_call_returns_all_its_results),
        T(a_closure_runs_with_its_upvalues),
        T(printed_output_arrives_before_the_result),
        T(output_streams_while_the_call_is_still_running),
        T(a_user_error_comes_back_with_message_and_traceback),
        T(a_call_past_its_timeout_is_stopped),
        T(a_result_that_cannot_be_sent_is_an_error_naming_it),
        T(a_call_to_an_undefined_prototype_is_a_decode_error),
        T(pipelined_calls_are_answered_in_order),
        T(instance_info_and_shard_follow_setup),
        T(package_path_from_setup_reaches_require),
        T(a_malformed_frame_makes_the_worker_exit_with_a_diagnostic),
        T(end_of_input_makes_the_worker_exit_cleanly),
        T(bye_makes_the_worker_exit_cleanly),
        T(a_silent_host_past_the_heartbeat_makes_the_worker_exit),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
