/*
 * skyrun.h — the public C API of libskyrun.
 *
 * A sky_host is a Lua 5.4 state with the `sky` module loaded (storage,
 * volumes, compute pools, remote functions), plus the interrupt handling that
 * lets pools be torn down on Ctrl-C. Embed it:
 *
 *     sky_host *h = sky_host_new(NULL);
 *     if (sky_host_run_file(h, "workflows/train.lua", argc - 1, argv + 1) != 0)
 *         fprintf(stderr, "%s\n", sky_host_error(h));
 *     sky_host_free(h);
 *
 * Link with `pkg-config --cflags --libs skyrun`. Any Lua 5.4 program can also
 * `require "sky"` (luaopen_sky) without a sky_host.
 */
#ifndef SKYRUN_H
#define SKYRUN_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SKYRUN_VERSION_MAJOR 0
#define SKYRUN_VERSION_MINOR 1

typedef struct sky_host sky_host;

typedef struct sky_host_options {
    int quiet;             /* only errors on stderr */
    int verbose;           /* debug diagnostics on stderr */
    int progress;          /* -1: on a terminal only (default), 0: never, 1: always */
    const char *config;    /* a skyrun.yaml to use instead of the default search */
    const char *profile;   /* the default storage profile */
    int handle_signals;    /* 1: SIGINT/SIGTERM interrupt the script so pools are torn down.
                              0: the program's own handlers stay in place, except
                              while a pool wait or a transfer runs: then the host's
                              are installed for that wait only, so it stops with an
                              "interrupted" error, and the program's are put back. */
} sky_host_options;

/* A new host. opts may be NULL (defaults). Returns NULL only when Lua
 * cannot allocate a state. */
sky_host *sky_host_new(const sky_host_options *opts);

/* Runs a Lua file with argc/argv as its `arg` table (arg[0] = path) and as
 * the chunk's `...`. Returns 0, or 1 when the script raised (message with
 * file:line in sky_host_error), or 130/143 when interrupted by SIGINT/SIGTERM. */
int sky_host_run_file(sky_host *h, const char *path, int argc, char **argv);

/* Runs a chunk of Lua source (never bytecode). chunkname as in luaL_loadbuffer. */
int sky_host_run_string(sky_host *h, const char *code, const char *chunkname);

/* The message of the last failure, or "" (owned by h). */
const char *sky_host_error(const sky_host *h);

/* The host's Lua state, to add modules of the embedding program. */
lua_State *sky_host_lua(sky_host *h);

/* Closes the Lua state (tearing down every pool still open) and frees h. NULL-safe. */
void sky_host_free(sky_host *h);

/* The `sky` module's opener, for require "sky" or luaL_requiref. */
int luaopen_sky(lua_State *L);

/* "0.1.0" */
const char *sky_version(void);

#ifdef __cplusplus
}
#endif
#endif
