/*
 * host: sky_host, the embeddable skyrun host (include/skyrun.h).
 *
 * A Lua state with the standard libraries and `sky` loaded, a message
 * handler that keeps file:line and a traceback, and the interrupt wiring:
 * SIGINT/SIGTERM set a flag (util/interrupt) that a Lua count hook and the
 * pool's wait loops check, so that both running Lua code and a pool waiting
 * for results stop with an "interrupted" error, and every `<close>` pool is
 * torn down on the way out.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "skyrun.h"
#include "util/interrupt.h"
#include "util/log.h"

struct sky_host {
    lua_State *L;
    int borrowed;               /* L is the program's: never closed here */
    sky_host_options opts;
    char *error;
};

/* "interrupted" was raised for the pending signal: raise it once, so the
 * `<close>` handlers that run while the error unwinds are not interrupted too. */
static volatile sig_atomic_t interrupt_raised;

#define INTERRUPT_CHECK_INSTRUCTIONS 1000

/*
 * A count hook on the main state, checking the interrupt flag every 1000
 * instructions. Coroutines inherit their creator's hook, so Lua code in a
 * coroutine stops as well; setting a hook from the signal handler would
 * reach the main thread only.
 */
static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (sky_interrupt_pending() && !interrupt_raised) {
        interrupt_raised = 1;
        luaL_error(L, "interrupted");
    }
}

static int message_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void set_error(sky_host *h, const char *msg)
{
    free(h->error);
    h->error = sky_xstrdup(msg ? msg : "");
    sky_redact(h->error);
}

/* Runs the function on top of the stack (with nargs arguments below it… above it). */
static int protected_run(sky_host *h, int nargs)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    int sig = sky_interrupt_pending();
    if (status == LUA_OK && !sig) {
        set_error(h, "");
        return 0;
    }
    if (status != LUA_OK) {
        set_error(h, lua_tostring(L, -1));
        lua_pop(L, 1);
    } else {
        set_error(h, "interrupted");
    }
    if (sig) {
        sky_interrupt_clear();
        interrupt_raised = 0;
        return 128 + sig;
    }
    return 1;
}

/* In protected mode: the options table the module reads, then `sky`. */
static int open_host(lua_State *L)
{
    const sky_host_options *o = lua_touserdata(L, 1);
    int own_state = lua_toboolean(L, 2);
    if (own_state)
        luaL_openlibs(L);
    /* Options the module reads: sky.core consults this registry table. */
    lua_newtable(L);
    lua_pushinteger(L, o->progress);
    lua_setfield(L, -2, "progress");
    if (o->config) {
        lua_pushstring(L, o->config);
        lua_setfield(L, -2, "config");
    }
    if (o->profile) {
        lua_pushstring(L, o->profile);
        lua_setfield(L, -2, "profile");
    }
    lua_pushboolean(L, o->quiet);
    lua_setfield(L, -2, "quiet");
    lua_setfield(L, LUA_REGISTRYINDEX, "sky.options");
    luaL_requiref(L, "sky", luaopen_sky, 1);   /* also the global `sky` */
    return 0;
}

sky_host *sky_host_create(const sky_host_options *opts, char *err, size_t errlen)
{
    char scratch[8];
    if (!err) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = 0;
    sky_host *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "skyrun: out of memory");
        return NULL;
    }
    if (opts)
        h->opts = *opts;
    else
        h->opts.progress = -1;
    h->borrowed = h->opts.L != NULL;
    if (h->borrowed)
        h->L = h->opts.L;
    else if (h->opts.alloc)
        h->L = lua_newstate(h->opts.alloc, h->opts.alloc_ud);
    else
        h->L = luaL_newstate();
    if (!h->L) {
        snprintf(err, errlen, "skyrun: cannot create a Lua state (out of memory)");
        free(h);
        return NULL;
    }
    lua_State *L = h->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, open_host);
    lua_pushlightuserdata(L, &h->opts);
    lua_pushboolean(L, !h->borrowed);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "skyrun: the sky module cannot start: %s", msg ? msg : "(no message)");
        lua_settop(L, top);
        if (!h->borrowed)
            lua_close(L);
        free(h);
        return NULL;
    }
    if (h->opts.verbose)
        sky_log_set_level(SKY_LOG_DEBUG);
    else if (h->opts.quiet)
        sky_log_set_level(SKY_LOG_ERROR);
    if (h->opts.handle_signals) {
        interrupt_raised = 0;
        lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, INTERRUPT_CHECK_INSTRUCTIONS);
        sky_interrupt_install();
    }
    h->opts.L = NULL;   /* not kept: the host refers to h->L */
    return h;
}

sky_host *sky_host_new(const sky_host_options *opts) { return sky_host_create(opts, NULL, 0); }

static void set_arg_table(lua_State *L, const char *script, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
}

int sky_host_run_file(sky_host *h, const char *path, int argc, char **argv)
{
    lua_State *L = h->L;
    set_arg_table(L, path ? path : "-", argc, argv);
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        set_error(h, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    luaL_checkstack(L, argc, "too many script arguments");
    for (int i = 0; i < argc; i++)
        lua_pushstring(L, argv[i]);
    return protected_run(h, argc);
}

int sky_host_run_string(sky_host *h, const char *code, const char *chunkname)
{
    lua_State *L = h->L;
    if (luaL_loadbufferx(L, code, strlen(code), chunkname ? chunkname : "=(command line)", "t") != LUA_OK) {
        set_error(h, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    return protected_run(h, 0);
}

const char *sky_host_error(const sky_host *h) { return h && h->error ? h->error : ""; }

lua_State *sky_host_lua(sky_host *h) { return h->L; }

void sky_host_free(sky_host *h)
{
    if (!h)
        return;
    if (!h->borrowed)
        lua_close(h->L);   /* runs __gc of every pool still open: workers stopped */
    free(h->error);
    free(h);
}
