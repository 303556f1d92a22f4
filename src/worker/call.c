/*
 * call: what the worker does with SETUP, DEFINE and CALL.
 *
 * A call runs under lua_pcall with a message handler that keeps the
 * error's text and the Lua traceback; a per-call timeout is a count hook
 * that compares a monotonic clock with the deadline and raises (then at
 * every instruction, so a pcall inside the function cannot swallow it). Its answer —
 * RESULT with every return value, or ERROR — is queued after all the
 * output the call produced.
 */
#include "worker/worker.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Instructions between two looks at the clock. */
#define TIMEOUT_CHECK_EVERY 10000

/* The hook has no user pointer; one call runs at a time. */
static struct {
    double deadline;
    double seconds;
    int fired;
} g_timeout;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void timeout_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (g_timeout.fired || now_seconds() >= g_timeout.deadline) {
        /* From now on raise at every instruction: a pcall in the function
         * catches one error, the very next instruction of its caller
         * raises again, so the call unwinds level by level. */
        if (!g_timeout.fired)
            lua_sethook(L, timeout_hook, LUA_MASKCOUNT, 1);
        g_timeout.fired = 1;
        luaL_error(L, "call timed out after %.1f s", g_timeout.seconds);
    }
}

/* Message handler: { message, traceback }. */
static int capture_error(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        luaL_tolstring(L, 1, NULL);
    else
        lua_pushvalue(L, 1);
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_rawseti(L, -2, 2);
    return 1;
}

static void queue_error(struct worker *w, uint64_t id, uint8_t kind, const char *msg,
                        size_t msg_len, const char *tb, size_t tb_len)
{
    sky_buf_reset(&w->body);
    wire_error_append(&w->body, id, kind, msg, msg_len, tb, tb_len);
    channel_send_after_output(&w->ch, WIRE_ERROR, w->body.data, w->body.len);
}

static void queue_error_str(struct worker *w, uint64_t id, uint8_t kind, const char *msg)
{
    queue_error(w, id, kind, msg, strlen(msg), "", 0);
}

/* Results from stack index first to the top. */
static void queue_results(struct worker *w, uint64_t id, int first)
{
    lua_State *L = w->L;
    wire_err err;
    int n = lua_gettop(L) - first + 1;
    sky_buf_reset(&w->body);
    wire_result_header(&w->body, id);
    if (wire_encode(w->codec, L, first, n, WIRE_ROOTS_RESULTS, &w->body, NULL, &err) != 0) {
        queue_error_str(w, id, WIRE_ERR_USER, err.msg);
        return;
    }
    if (w->body.len > WIRE_MAX_BODY) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the results are too large to send back: they encode to %.1f MiB, over the %u MiB "
                 "one answer may carry (write large data to storage or a volume)",
                 (double)w->body.len / (1 << 20), (unsigned)(WIRE_MAX_BODY >> 20));
        queue_error_str(w, id, WIRE_ERR_USER, msg);
        return;
    }
    channel_send_after_output(&w->ch, WIRE_RESULT, w->body.data, w->body.len);
}

static void queue_failure(struct worker *w, uint64_t id, int status)
{
    lua_State *L = w->L;
    if (g_timeout.fired) {
        char msg[64];
        snprintf(msg, sizeof msg, "call timed out after %.1f s", g_timeout.seconds);
        const char *tb = "";
        size_t tb_len = 0;
        if (lua_type(L, -1) == LUA_TTABLE && lua_rawgeti(L, -1, 2) == LUA_TSTRING)
            tb = lua_tolstring(L, -1, &tb_len);
        queue_error(w, id, WIRE_ERR_TIMEOUT, msg, strlen(msg), tb, tb_len);
        return;
    }
    if (status == LUA_ERRRUN && lua_type(L, -1) == LUA_TTABLE) {
        size_t msg_len = 0, tb_len = 0;
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        const char *msg = lua_tolstring(L, -2, &msg_len);
        const char *tb = lua_tolstring(L, -1, &tb_len);
        queue_error(w, id, WIRE_ERR_USER, msg ? msg : "", msg_len, tb ? tb : "", tb_len);
        return;
    }
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error while handling an error";
    queue_error_str(w, id, WIRE_ERR_USER, msg);
}

int worker_call(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len)
{
    lua_State *L = w->L;
    uint64_t id;
    double timeout;
    const uint8_t *values;
    size_t values_len;
    wire_err err;
    if (wire_call_parse(body, len, &id, &timeout, &values, &values_len, &err) != WIRE_OK) {
        snprintf(why, why_len, "%s", err.msg);
        return -1;
    }
    if (!inbox_start_call(&w->inbox, id))
        return 0;   /* the host took it back (CANCELLED was sent): it runs elsewhere */
    lua_settop(L, 0);
    lua_pushcfunction(L, capture_error);
    int n = wire_decode(w->codec, L, values, values_len, &err);
    if (n < 0) {
        queue_error_str(w, id, WIRE_ERR_DECODE, err.msg);
        lua_settop(L, 0);
        return 0;
    }
    if (n < 1 || lua_type(L, 2) != LUA_TFUNCTION) {
        char msg[96];
        snprintf(msg, sizeof msg, "CALL %llu does not start with a function (it starts with a %s)",
                 (unsigned long long)id, n < 1 ? "nothing" : luaL_typename(L, 2));
        queue_error_str(w, id, WIRE_ERR_DECODE, msg);
        lua_settop(L, 0);
        return 0;
    }
    g_timeout.fired = 0;
    if (timeout > 0) {
        g_timeout.seconds = timeout;
        g_timeout.deadline = now_seconds() + timeout;
        lua_sethook(L, timeout_hook, LUA_MASKCOUNT, TIMEOUT_CHECK_EVERY);
    }
    int status = lua_pcall(L, n - 1, LUA_MULTRET, 1);
    if (timeout > 0)
        lua_sethook(L, NULL, 0, 0);
    if (status == LUA_OK)
        queue_results(w, id, 2);
    else
        queue_failure(w, id, status);
    lua_settop(L, 0);
    return 0;
}

int worker_define(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len)
{
    wire_hash h;
    const uint8_t *code;
    size_t code_len;
    wire_err err;
    if (wire_define_parse(body, len, &h, &code, &code_len, &err) != WIRE_OK ||
        wire_codec_define(w->codec, &h, code, code_len, &err) != 0) {
        snprintf(why, why_len, "%s", err.msg);
        return -1;
    }
    return 0;
}

/* Reads an optional integer field of the SETUP table at index t. */
static int setup_int(lua_State *L, int t, const char *k, lua_Integer min, lua_Integer *v,
                     char *why, size_t why_len)
{
    int type = lua_getfield(L, t, k);
    int ok = type == LUA_TNIL || (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= min);
    if (ok && type != LUA_TNIL)
        *v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (!ok)
        snprintf(why, why_len, "SETUP field '%s' must be an integer of at least %lld", k, (long long)min);
    return ok ? 0 : -1;
}

static int setup_string(lua_State *L, int t, const char *k, const char **v, char *why, size_t why_len)
{
    int type = lua_getfield(L, t, k);
    lua_pop(L, 1);   /* the table keeps the string alive */
    if (type == LUA_TNIL)
        return 0;
    if (type != LUA_TSTRING) {
        snprintf(why, why_len, "SETUP field '%s' must be a string", k);
        return -1;
    }
    lua_getfield(L, t, k);
    *v = lua_tostring(L, -1);
    lua_pop(L, 1);
    return 0;
}

static void prepend_package_path(lua_State *L, const char *dirs)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s;%s", dirs, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

int worker_setup(struct worker *w, const uint8_t *body, size_t len, char *why, size_t why_len)
{
    lua_State *L = w->L;
    struct worker_place *p = &w->place;
    wire_err err;
    lua_settop(L, 0);
    int n = wire_decode(w->codec, L, body, len, &err);
    if (n < 0) {
        snprintf(why, why_len, "SETUP: %s", err.msg);
        return -1;
    }
    if (n != 1 || !lua_istable(L, 1)) {
        snprintf(why, why_len, "SETUP must be one table");
        lua_settop(L, 0);
        return -1;
    }
    const char *node_name = NULL, *workdir = NULL, *package_path = NULL;
    int rc = -1;
    if (setup_int(L, 1, "node", 0, &p->node, why, why_len) < 0 ||
        setup_int(L, 1, "nodes", 1, &p->nodes, why, why_len) < 0 ||
        setup_int(L, 1, "worker", 0, &p->worker, why, why_len) < 0 ||
        setup_int(L, 1, "workers", 1, &p->workers, why, why_len) < 0 ||
        setup_string(L, 1, "node_name", &node_name, why, why_len) < 0 ||
        setup_string(L, 1, "workdir", &workdir, why, why_len) < 0 ||
        setup_string(L, 1, "package_path", &package_path, why, why_len) < 0)
        goto done;
    if (lua_getfield(L, 1, "heartbeat") != LUA_TNIL) {
        int isnum;
        double hb = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(hb >= 0)) {
            snprintf(why, why_len, "SETUP field 'heartbeat' must be a number of seconds >= 0");
            goto done;
        }
        p->heartbeat = hb;
        inbox_set_heartbeat(&w->inbox, hb);
    }
    if (p->node >= p->nodes || p->worker >= p->workers) {
        snprintf(why, why_len, "SETUP places node %lld of %lld, worker %lld of %lld (ids are 0-based)",
                 (long long)p->node, (long long)p->nodes, (long long)p->worker, (long long)p->workers);
        goto done;
    }
    if (node_name)
        snprintf(p->node_name, sizeof p->node_name, "%s", node_name);
    if (workdir && chdir(workdir) != 0) {
        snprintf(why, why_len, "SETUP workdir '%s': %s", workdir, strerror(errno));
        goto done;
    }
    if (package_path)
        prepend_package_path(L, package_path);
    /* The GPUs the pool gave this worker: instance_info().accelerators. */
    if (lua_getfield(L, 1, "accelerators") == LUA_TTABLE)
        lua_setfield(L, LUA_REGISTRYINDEX, SKY_WORKER_GPUS_KEY);
    else
        lua_pop(L, 1);
    rc = 0;
done:
    lua_settop(L, 0);
    return rc;
}
