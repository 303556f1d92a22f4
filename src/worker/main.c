/*
 * skyrun-worker: runs the Lua functions a skyrun host sends it.
 *
 *   skyrun-worker --version   prints its version, protocol and Lua version
 *   skyrun-worker             speaks frames on stdin/stdout (see wire.h)
 *   skyrun-worker --keeper …  the node's keeper (keeper.c)
 *   skyrun-worker --gpus      the node's GPUs, one "BUS<TAB>MODEL" per line
 *
 * It says HELLO with the node's facts, takes SETUP, then answers each CALL
 * with RESULT or ERROR, streaming what the call prints as OUTPUT. It exits
 * by itself on BYE, at the end of its input, when the host has been silent
 * longer than the heartbeat allows, or on a malformed frame (with a
 * diagnostic on stderr). It links only Lua, lz4 and libc, so it can be
 * copied to any Linux node of the same architecture.
 *
 * Throughput: the input thread (inbox.c) reads in large chunks and hands
 * over every complete frame at once; the answers are written together once
 * those are handled.
 */
#include "worker/worker.h"
#include "skyrun_config.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum step { STEP_GO_ON, STEP_BYE, STEP_BAD };

void worker_diagnose(const char *program, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s[%ld]: %s\n", program, (long)getpid(), msg);
}

#define diagnose(...) worker_diagnose("skyrun-worker", __VA_ARGS__)

/* Leaves after sending everything already queued (output included). */
static void finish(struct worker *w, int status)
{
    channel_take_output(&w->ch);
    channel_flush(&w->ch);
    wire_codec_free(w->codec);
    lua_close(w->L);
    sky_buf_free(&w->body);
    exit(status);
}

static int send_hello(struct worker *w)
{
    wire_err err;
    sky_buf facts = SKY_BUF_INIT;
    sky_push_facts(w->L);
    int rc = wire_encode(w->codec, w->L, -1, 1, WIRE_ROOTS_VALUES, &facts, NULL, &err);
    lua_pop(w->L, 1);
    if (rc == 0) {
        sky_buf_reset(&w->body);
        wire_hello_append(&w->body, facts.data, facts.len);
        channel_send_after_output(&w->ch, WIRE_HELLO, w->body.data, w->body.len);
        rc = channel_flush(&w->ch);
    }
    sky_buf_free(&facts);
    return rc;
}

static enum step handle_frame(struct worker *w, const wire_frame *f)
{
    char why[300] = "";
    int rc = 0;
    switch (f->type) {
    case WIRE_SETUP:
        rc = worker_setup(w, f->body, f->len, why, sizeof why);
        break;
    case WIRE_DEFINE:
        rc = worker_define(w, f->body, f->len, why, sizeof why);
        break;
    case WIRE_CALL:
        rc = worker_call(w, f->body, f->len, why, sizeof why);
        break;
    case WIRE_PING:
        break;
    case WIRE_BYE:
        return STEP_BYE;
    default:
        snprintf(why, sizeof why, "a host does not send %s frames", wire_type_name(f->type));
        rc = -1;
        break;
    }
    if (rc < 0) {
        diagnose("bad %s frame from host: %s", wire_type_name(f->type), why);
        return STEP_BAD;
    }
    return STEP_GO_ON;
}

/* Handles every frame of `in` (decompressed by the inbox), in order. */
static enum step handle_frames(struct worker *w, sky_buf *in, sky_buf *scratch)
{
    size_t off = 0;
    enum step step = STEP_GO_ON;
    while (step == STEP_GO_ON) {
        wire_frame f;
        size_t used;
        wire_err err;
        int rc = wire_frame_next(in->data + off, in->len - off, scratch, &f, &used, &err);
        if (rc != WIRE_OK)
            break;   /* the inbox only passes whole, checked frames */
        off += used;
        step = handle_frame(w, &f);
    }
    sky_buf_reset(in);
    return step;
}

static void serve(struct worker *w)
{
    sky_buf in = SKY_BUF_INIT, scratch = SKY_BUF_INIT;
    int status = WORKER_EXIT_OK;
    for (;;) {
        int rc = inbox_wait(&w->inbox, &in);
        if (rc != 0) {
            if (rc < 0 || w->inbox.why[0])
                diagnose("%s", w->inbox.why);
            status = rc < 0 ? WORKER_EXIT_PROTOCOL : WORKER_EXIT_OK;
            break;
        }
        enum step step = handle_frames(w, &in, &scratch);
        if (channel_flush(&w->ch) < 0) {
            diagnose("the host closed its end of the channel");
            status = WORKER_EXIT_PROTOCOL;
            break;
        }
        if (step != STEP_GO_ON) {
            status = step == STEP_BYE ? WORKER_EXIT_OK : WORKER_EXIT_PROTOCOL;
            break;
        }
    }
    sky_buf_free(&in);
    sky_buf_free(&scratch);
    finish(w, status);
}

static void print_version(void)
{
    printf("skyrun-worker %s (protocol %u, %s)\n", SKYRUN_VERSION, WIRE_PROTOCOL_VERSION, LUA_RELEASE);
}

#ifdef SKYRUN_WORKER_STATIC
static int c_module_refused(lua_State *L)
{
    return luaL_error(L, "skyrun-worker is statically linked and cannot load C modules "
                         "(the node's C library did not run skyrun-worker-dynamic; ship Lua modules "
                         "with image.includes, or run a program with os.execute)");
}

/* The C searchers' place in `require`: says why the module cannot be a C
 * one here (Lua joins each searcher's message into "module 'x' not found"). */
static int c_searcher_refused(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_pushfstring(L, "\n\tno C module '%s': this worker is the static skyrun-worker, which cannot "
                       "load C modules (a pool whose sky.image names apt packages runs the dynamic "
                       "one where the node's C library allows it)", name);
    return 1;
}

/*
 * A fully static worker runs on any Linux node of its architecture, whatever
 * its C library; the price is that dlopen() of a module linked against the
 * node's own libc would put two C libraries in one process. So C modules are
 * refused with a message instead of crashing later: the C searchers of
 * `require` say why, and package.loadlib raises.
 */
static void refuse_c_modules(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pushcfunction(L, c_module_refused);
    lua_setfield(L, -2, "loadlib");
    lua_getfield(L, -1, "searchers");
    /* searchers: 1 preload, 2 Lua files, 3 C libraries, 4 all-in-one C */
    lua_pushnil(L);
    lua_rawseti(L, -2, 4);
    lua_pushcfunction(L, c_searcher_refused);
    lua_rawseti(L, -2, 3);
    lua_pop(L, 2);
}
#endif

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        print_version();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--keeper") == 0)
        return keeper_main(argc, argv);
    if (argc == 2 && strcmp(argv[1], "--gpus") == 0) {
        /* The node's GPUs, one per line: bus id, a tab, the model. */
        struct gpu gpus[SKY_MAX_GPUS];
        int n = sky_gpus(gpus, SKY_MAX_GPUS);
        for (int i = 0; i < n; i++)
            printf("%s\t%s\n", gpus[i].bus, gpus[i].model);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: skyrun-worker [--version | --gpus | --keeper NODE_DIR]\n"
                        "  with no argument it speaks the skyrun protocol on stdin/stdout\n");
        return WORKER_EXIT_USAGE;
    }
    static struct worker w;
    char why[256];
    if (channel_open(&w.ch, why, sizeof why) < 0) {
        diagnose("%s", why);
        return WORKER_EXIT_PROTOCOL;
    }
    w.place = (struct worker_place){ .node = 0, .nodes = 1, .worker = 0, .workers = 1 };
    w.L = luaL_newstate();
    if (!w.L) {
        diagnose("cannot create a Lua state");
        return WORKER_EXIT_PROTOCOL;
    }
    luaL_openlibs(w.L);
#ifdef SKYRUN_WORKER_STATIC
    refuse_c_modules(w.L);
#endif
    sky_module_open(w.L, &w.place);
    w.codec = wire_codec_new(w.L, WIRE_CODEC_ADOPT_METATABLES);
    if (channel_start_drain(&w.ch) < 0) {
        diagnose("cannot start the output thread");
        return WORKER_EXIT_PROTOCOL;
    }
    if (inbox_start(&w.inbox, &w.ch) < 0) {
        diagnose("cannot start the input thread");
        return WORKER_EXIT_PROTOCOL;
    }
    if (send_hello(&w) < 0) {
        diagnose("cannot say HELLO to the host");
        finish(&w, WORKER_EXIT_PROTOCOL);
    }
    serve(&w);
    return 0;
}
