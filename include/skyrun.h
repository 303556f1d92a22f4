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
 * `require "sky"` (luaopen_sky) without a sky_host, or hand its own state to
 * sky_host_create (options.L).
 *
 * This header is the whole public C API: the layers' headers under src/
 * (storage, pools, the wire) are internal and may change between versions.
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
    lua_State *L;          /* the program's own state to use: `sky` is opened into it
                              (package.loaded.sky and the global `sky`), nothing else
                              is changed, and sky_host_free leaves it open (pools in
                              it stop when the program closes it). NULL: the host
                              makes a state with the standard libraries. */
    lua_Alloc alloc;       /* the allocator for the state the host makes (L == NULL);
                              NULL: the C library's */
    void *alloc_ud;
} sky_host_options;

/* A new host. opts may be NULL (defaults). Lua and the `sky` module start
 * in protected mode: when anything fails (no memory, a module that cannot
 * start), it returns NULL and, when err is not NULL, a message in err. */
sky_host *sky_host_create(const sky_host_options *opts, char *err, size_t errlen);

/* sky_host_create(opts, NULL, 0). */
sky_host *sky_host_new(const sky_host_options *opts);

/* Runs a Lua file with argc/argv as its `arg` table (arg[0] = path) and as
 * the chunk's `...`. Returns 0, or 1 when the script raised (message with
 * file:line in sky_host_error), or 130/143 when interrupted by SIGINT/SIGTERM. */
int sky_host_run_file(sky_host *h, const char *path, int argc, char **argv);

/* Runs a chunk of Lua source (never bytecode). chunkname as in luaL_loadbuffer. */
int sky_host_run_string(sky_host *h, const char *code, const char *chunkname);

/* The message of the last failure, or "" (owned by h). */
const char *sky_host_error(const sky_host *h);

/* The host's Lua state (the program's own when it gave one), to add modules
 * of the embedding program. */
lua_State *sky_host_lua(sky_host *h);

/* Closes the Lua state it made (tearing down every pool still open) and
 * frees h; a state the program gave stays open. NULL-safe. */
void sky_host_free(sky_host *h);

/* The `sky` module's opener, for require "sky" or luaL_requiref. */
int luaopen_sky(lua_State *L);

/* "0.1.0" */
const char *sky_version(void);

#ifdef __cplusplus
}
#endif
#endif
