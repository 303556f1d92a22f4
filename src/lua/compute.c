/*
 * compute (bindings): pools as Lua userdata, over compute/pool.
 *
 * C does the work — encoding calls with the state's codec, the pool's
 * scheduler, decoding results — and exposes primitives (_submit, _wait,
 * _stream_open/_next/_close, _done, _release, _forget). lua/sky.lua builds
 * the user-facing verbs (`>>`, `&`, run, submit, map, stream, broadcast)
 * from them.
 *
 * Convention: misuse raises; a failed remote call is returned as
 * `false, error_table` so the Lua side can raise it at the caller's line.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "compute/pool.h"
#include "lua/bindings.h"
#include "lua/storage.h"
#include "util/config.h"
#include "util/interrupt.h"
#include "wire/wire.h"

#define POOL_TYPE "sky.pool"
#define CODEC_KEY "sky.codec"

/* A Lua finalizer can run during any allocation, and it may close this very
 * pool (pool:close() in some object's __gc). While a method runs, `busy` is
 * set and close() only marks the pool; the method frees it on its way out. */
typedef struct pool_ud {
    sky_pool *pool;
    int busy;
    int close_pending;
    uint64_t *forgotten;        /* calls released by finalizers while busy */
    size_t nforgotten, capforgotten;
} pool_ud;

typedef struct codec_ud {
    wire_codec *codec;
} codec_ud;

static int codec_gc(lua_State *L)
{
    codec_ud *c = lua_touserdata(L, 1);
    if (c->codec) {
        wire_codec_free(c->codec);
        c->codec = NULL;
    }
    return 0;
}

/* The state's one codec (created on first use, freed with the state). */
static wire_codec *state_codec(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, CODEC_KEY) == LUA_TUSERDATA) {
        codec_ud *c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c->codec;
    }
    lua_pop(L, 1);
    codec_ud *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->codec = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, codec_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    c->codec = wire_codec_new(L, WIRE_CODEC_KEEP_DEBUG);  /* line numbers in remote tracebacks */
    if (!c->codec)
        luaL_error(L, "sky: cannot create the value codec");
    lua_setfield(L, LUA_REGISTRYINDEX, CODEC_KEY);
    return c->codec;
}

static pool_ud *check_pool(lua_State *L, int idx)
{
    pool_ud *u = luaL_checkudata(L, idx, POOL_TYPE);
    if (!u->pool || u->close_pending)
        luaL_error(L, "the pool is closed");
    return u;
}

/* Methods that run the pool and allocate Lua values bracket that part with
 * enter/leave; argument errors are raised before enter. */
static void enter(pool_ud *u) { u->busy++; }

static void leave(pool_ud *u)
{
    if (--u->busy > 0)
        return;
    for (size_t i = 0; i < u->nforgotten && u->pool; i++)
        sky_pool_release(u->pool, u->forgotten[i]);
    u->nforgotten = 0;
    if (u->close_pending && u->pool) {
        sky_pool_free(u->pool);
        u->pool = NULL;
    }
}

static void forget_call(pool_ud *u, uint64_t id);

static int opt_int_field(lua_State *L, int t, const char *k, int dflt)
{
    int ty = lua_getfield(L, t, k);
    int v = dflt;
    if (ty == LUA_TNUMBER && lua_isinteger(L, -1))
        v = (int)lua_tointeger(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "sky.compute: '%s' must be an integer", k);
    lua_pop(L, 1);
    return v;
}

static double opt_num_field(lua_State *L, int t, const char *k, double dflt)
{
    int ty = lua_getfield(L, t, k);
    double v = dflt;
    if (ty == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "sky.compute: '%s' must be a number", k);
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *v = lua_tostring(L, -1);   /* kept alive by the spec table */
    lua_pop(L, 1);
    return v;
}

/* sky.providers.ssh{…} (checked in lua/sky.lua) to a provider. */
static sky_provider *ssh_provider_from_spec(lua_State *L, int spec, int t, char *err, size_t errlen)
{
    sky_ssh_options o = { 0 };
    lua_getfield(L, spec, "workers");
    o.workers = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "hosts");
    size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    const char **hosts = lua_newuserdatauv(L, (n + 1) * sizeof *hosts, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        hosts[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (!hosts[i]) {
            snprintf(err, errlen, "sky.providers.ssh: hosts[%zu] is not a string", i + 1);
            lua_pop(L, 2);
            return NULL;
        }
    }
    hosts[n] = NULL;
    o.hosts = hosts;
    o.nhosts = n;
    o.user = opt_string(L, t, "user");
    o.identity = opt_string(L, t, "identity");
    o.known_hosts = opt_string(L, t, "known_hosts");
    o.host_key_policy = opt_string(L, t, "host_key_policy");
    o.ssh_config = opt_string(L, t, "ssh_config");
    lua_getfield(L, t, "port");
    o.port = (int)lua_tointeger(L, -1);
    lua_getfield(L, t, "connect_timeout");
    o.connect_seconds = lua_tonumber(L, -1);
    lua_pop(L, 2);
    sky_provider *pr = sky_provider_ssh_new(&o, err, errlen);   /* copies what it keeps */
    lua_pop(L, 2);
    return pr;
}

/* sky.providers.slurm{…} (checked in lua/sky.lua) to a provider. */
static sky_provider *slurm_provider_from_spec(lua_State *L, int spec, int t, char *err, size_t errlen)
{
    sky_slurm_options o = { 0 };
    lua_getfield(L, spec, "workers");
    o.workers = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    o.partition = opt_string(L, t, "partition");
    o.account = opt_string(L, t, "account");
    o.qos = opt_string(L, t, "qos");
    o.constraint = opt_string(L, t, "constraint");
    o.time = opt_string(L, t, "time");
    o.gpus_per_node = opt_string(L, t, "gpus_per_node");
    lua_getfield(L, t, "cpus_per_worker");
    o.cpus_per_worker = (int)lua_tointeger(L, -1);
    lua_getfield(L, t, "start_timeout");
    o.start_seconds = lua_tonumber(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, t, "sbatch");
    size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    const char **flags = lua_newuserdatauv(L, (n + 1) * sizeof *flags, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        flags[i] = lua_tostring(L, -1);   /* kept alive by the sbatch table */
        lua_pop(L, 1);
        if (!flags[i]) {
            snprintf(err, errlen, "sky.providers.slurm: sbatch[%zu] is not a string", i + 1);
            lua_pop(L, 2);
            return NULL;
        }
    }
    flags[n] = NULL;
    o.sbatch = flags;
    o.nsbatch = n;
    sky_provider *pr = sky_provider_slurm_new(&o, err, errlen);   /* copies what it keeps */
    lua_pop(L, 2);
    return pr;
}

/* A node of skyrun.yaml as Lua values: maps to tables, sequences to arrays,
 * scalars to strings (sky.providers.named converts numbers). */
static void push_config_node(lua_State *L, const sky_config_node *n, int depth)
{
    luaL_checkstack(L, 4, "skyrun.yaml");
    if (n->kind == SKY_CONFIG_SCALAR || depth > SKY_CONFIG_MAX_DEPTH) {
        lua_pushstring(L, n->value ? n->value : "");
        return;
    }
    lua_createtable(L, 0, (int)n->nchildren);
    for (size_t i = 0; i < n->nchildren; i++) {
        push_config_node(L, n->children[i], depth + 1);
        if (n->kind == SKY_CONFIG_SEQ)
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        else
            lua_setfield(L, -2, n->children[i]->key ? n->children[i]->key : "");
    }
}

/* core.provider_config(name) -> the table providers.NAME of skyrun.yaml
 * (the file --config, $SKYRUN_CONFIG, ./skyrun.yaml or
 * ~/.config/skyrun/config.yaml names), "file:line:col" of it. */
static int provider_config(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *explicit_path = NULL;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "sky.options") == LUA_TTABLE &&
        lua_getfield(L, -1, "config") == LUA_TSTRING)
        explicit_path = lua_tostring(L, -1);   /* kept alive by the registry table */
    char path[4096], err[600];
    if (!sky_config_find(explicit_path, path, sizeof path))
        return luaL_error(L, "sky.providers.named: no skyrun.yaml (looked for --config, $SKYRUN_CONFIG, "
                             "./skyrun.yaml, ~/.config/skyrun/config.yaml) to find provider '%s' in", name);
    sky_config *cfg = sky_config_load_file(path, err, sizeof err);
    if (!cfg)
        return luaL_error(L, "%s", err);
    const sky_config_node *p = sky_config_child(sky_config_get(cfg->root, "providers"), name);
    if (!p || p->kind != SKY_CONFIG_MAP) {
        sky_config_free(cfg);
        return luaL_error(L, "sky.providers.named: %s has no provider '%s' (under providers:)", path, name);
    }
    char where[600];
    sky_config_where(cfg, p, where, sizeof where);
    push_config_node(L, p, 0);
    lua_pushstring(L, where);
    sky_config_free(cfg);
    return 2;
}

/* The provider a pool's spec names: spec.provider is the table
 * sky.providers.NAME{…} made. */
static sky_provider *provider_from_spec(lua_State *L, int spec, int has_volumes, char *err, size_t errlen)
{
    /* Volumes need a mount namespace per node: as non-root, a user namespace. */
    sky_localhost_options lo = { .user_namespace = has_volumes && geteuid() != 0 };
    if (lua_getfield(L, spec, "provider") != LUA_TTABLE) {
        lua_pop(L, 1);
        return sky_provider_localhost_new(&lo, err, errlen);
    }
    int t = lua_gettop(L);
    lua_getfield(L, t, "type");
    const char *type = lua_tostring(L, -1);
    sky_provider *pr = NULL;
    if (type && strcmp(type, "localhost") == 0) {
        pr = sky_provider_localhost_new(&lo, err, errlen);
    } else if (type && strcmp(type, "ssh") == 0) {
        pr = ssh_provider_from_spec(L, spec, t, err, errlen);
    } else if (type && strcmp(type, "slurm") == 0) {
        pr = slurm_provider_from_spec(L, spec, t, err, errlen);
    } else {
        snprintf(err, errlen, "unknown provider '%s' (known: localhost, ssh, slurm)", type ? type : "?");
    }
    lua_settop(L, t - 1);
    return pr;
}

/* A NULL-terminated array of the strings in the list t[k] (pointing into
 * Lua strings that the spec keeps alive while the pool is made). */
static const char **string_list(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
    const char **v = lua_newuserdatauv(L, (n + 1) * sizeof *v, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        v[i] = lua_tostring(L, -1);
        if (!v[i])
            luaL_error(L, "sky.compute: %s[%d] must be a string", k, (int)i + 1);
        lua_pop(L, 1);   /* still referenced by the list */
    }
    v[n] = NULL;
    lua_remove(L, -2);   /* the list; the array stays on the stack until pool_new returns */
    return v;
}

/* spec.image (lua/sky.lua made it: lists of strings) into a sky_image. */
static void image_from_spec(lua_State *L, int spec, sky_image *img)
{
    memset(img, 0, sizeof *img);
    if (lua_getfield(L, spec, "image") != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    img->apt = string_list(L, t, "apt");
    img->env = string_list(L, t, "env");
    img->setup = string_list(L, t, "setup");
    img->includes = string_list(L, t, "includes");
    /* the table and the arrays stay on the stack */
}

/* spec.volumes into sky_volume records (storage: the sky.storage objects). */
static sky_volume *volumes_from_spec(lua_State *L, int spec, size_t *n)
{
    *n = 0;
    if (lua_getfield(L, spec, "volumes") != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    int t = lua_gettop(L);
    *n = lua_rawlen(L, t);
    sky_volume *v = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *v, 0);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, t, (lua_Integer)i + 1);
        int vt = lua_gettop(L);
        memset(&v[i], 0, sizeof v[i]);
        lua_getfield(L, vt, "bucket");
        v[i].bucket = lua_tostring(L, -1);
        lua_getfield(L, vt, "prefix");
        v[i].prefix = lua_tostring(L, -1);
        lua_getfield(L, vt, "mount");
        v[i].mount = lua_tostring(L, -1);
        lua_getfield(L, vt, "read_only");
        v[i].read_only = lua_toboolean(L, -1);
        lua_getfield(L, vt, "mode");
        const char *mode = lua_tostring(L, -1);
        v[i].mode = mode && strcmp(mode, "copy") == 0 ? SKY_VOLUME_COPY : SKY_VOLUME_MOUNT;
        lua_getfield(L, vt, "storage");
        v[i].storage = sky_lua_check_storage(L, -1);
        lua_settop(L, vt - 1);   /* the strings stay referenced by the volume table */
    }
    return v;
}

/* core.pool_new{ provider = {type=…}, nodes=, workers=, retries=, timeout=, worker=, quiet=,
 *                image = {…}, volumes = {…} }:
 * defaults and limits are the compute layer's (sky_pool_options_init, sky_pool_new). */
static int pool_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    sky_pool_options o;
    sky_pool_options_init(&o);
    lua_getfield(L, 1, "worker");
    o.worker_path = luaL_optstring(L, -1, NULL);
    o.nodes = opt_int_field(L, 1, "nodes", o.nodes);
    o.workers = opt_int_field(L, 1, "workers", o.workers);
    o.retries = opt_int_field(L, 1, "retries", o.retries);
    o.timeout = opt_num_field(L, 1, "timeout", o.timeout);
    o.heartbeat = opt_num_field(L, 1, "heartbeat", o.heartbeat);
    lua_getfield(L, 1, "quiet");
    o.quiet = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "accelerator");
    o.accelerator = lua_tostring(L, -1);   /* kept by the spec */
    lua_pop(L, 1);
    sky_image image;
    image_from_spec(L, 1, &image);
    o.image = &image;
    o.volumes = volumes_from_spec(L, 1, &o.nvolumes);

    wire_codec *codec = state_codec(L);
    pool_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    *u = (pool_ud){ 0 };
    luaL_setmetatable(L, POOL_TYPE);
    /* The spec keeps the volumes' storage objects alive as long as the pool. */
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    char err[1200];
    o.provider = provider_from_spec(L, 1, o.nvolumes > 0, err, sizeof err);
    if (!o.provider)
        return luaL_error(L, "sky.compute: %s", err);
    u->pool = sky_pool_new(&o, codec, L, err, sizeof err);
    if (!u->pool)
        return luaL_error(L, "sky.compute: %s", err);
    return 1;
}

/* Encodes the function and arguments at base..base+n-1 for a CALL frame:
 * refuses what cannot travel, and what is too large to. */
static int encode_call(wire_codec *codec, lua_State *L, int base, int n, sky_buf *out,
                       wire_hashes *protos, wire_err *we)
{
    if (wire_encode(codec, L, base, n, WIRE_ROOTS_CALL, out, protos, we) != 0)
        return -1;
    if (out->len > SKY_POOL_MAX_CALL_BYTES) {
        snprintf(we->msg, sizeof we->msg,
                 "the call is too large to send: its function and arguments encode to %.1f MiB, "
                 "over the %u MiB one call may carry (pass large data through storage or a volume)",
                 (double)out->len / (1 << 20), (unsigned)(WIRE_MAX_BODY >> 20));
        out->len = 0;
        return -1;
    }
    return 0;
}

/* pool:_submit(f, args, timeout, node) -> id; args is a table.pack()ed list. */
static int pool_submit(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TTABLE);
    double timeout = luaL_optnumber(L, 4, 0);
    int node = (int)luaL_optinteger(L, 5, -1);
    if (node >= sky_pool_nodes(u->pool))
        return luaL_error(L, "node %d does not exist (the pool has %d)", node, sky_pool_nodes(u->pool));
    lua_getfield(L, 3, "n");
    int nargs = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_rawlen(L, 3);
    lua_pop(L, 1);
    if (timeout < 0)
        return luaL_error(L, "timeout must be positive (got %f)", timeout);
    enter(u);   /* from here on, allocations may run finalizers that close the pool */
    if (!lua_checkstack(L, nargs + 2)) {
        leave(u);
        return luaL_error(L, "too many arguments (%d)", nargs);
    }
    wire_codec *codec = state_codec(L);
    int base = lua_gettop(L) + 1;
    lua_pushvalue(L, 2);
    for (int i = 1; i <= nargs; i++)
        lua_rawgeti(L, 3, i);
    sky_buf out = SKY_BUF_INIT;
    wire_hashes protos = { 0 };
    wire_err we;
    int rc = encode_call(codec, L, base, nargs + 1, &out, &protos, &we);
    lua_settop(L, base - 1);
    uint64_t id = rc == 0 && u->pool && !u->close_pending
                      ? sky_pool_submit(u->pool, out.data, out.len, &protos, timeout, node) : 0;
    sky_buf_free(&out);
    wire_hashes_free(&protos);
    leave(u);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, we.msg);
        return 2;
    }
    if (!id)
        return luaL_error(L, "the pool is closed");
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* pool:_submit_each(f, list, timeout) -> ids: one call f(list[i]) per
 * element, encoded and queued without a Lua table per call (pool:map). On
 * an unsendable element returns nil, message, and releases what it queued. */
static int pool_submit_each(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TTABLE);
    double timeout = luaL_optnumber(L, 4, 0);
    if (timeout < 0)
        return luaL_error(L, "timeout must be positive (got %f)", timeout);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
    enter(u);   /* from here on, allocations may run finalizers that close the pool */
    wire_codec *codec = state_codec(L);
    lua_createtable(L, (int)n, 0);
    int ids = lua_gettop(L);
    sky_buf out = SKY_BUF_INIT;
    wire_hashes protos = { 0 };
    for (lua_Integer i = 1; i <= n; i++) {
        sky_buf_reset(&out);
        protos.n = 0;
        lua_pushvalue(L, 2);
        lua_rawgeti(L, 3, i);
        wire_err we;
        if (encode_call(codec, L, ids + 1, 2, &out, &protos, &we) != 0) {
            lua_settop(L, ids);
            for (lua_Integer j = 1; j < i; j++) {   /* all or nothing */
                lua_rawgeti(L, ids, j);
                sky_pool_release(u->pool, (uint64_t)lua_tointeger(L, -1));
                lua_pop(L, 1);
            }
            sky_buf_free(&out);
            wire_hashes_free(&protos);
            leave(u);
            lua_pushnil(L);
            lua_pushfstring(L, "map element %I: %s", i, we.msg);
            return 2;
        }
        lua_settop(L, ids);
        uint64_t id = sky_pool_submit(u->pool, out.data, out.len, &protos, timeout, -1);
        lua_pushinteger(L, (lua_Integer)id);
        lua_rawseti(L, ids, i);
    }
    sky_buf_free(&out);
    wire_hashes_free(&protos);
    leave(u);
    return 1;
}

static int push_outcome(lua_State *L, const sky_call_outcome *o);

/* pool:_wait_each(ids) -> list of each call's first result, or
 * false, error, index of the failed call (the later calls are released). */
static int pool_wait_each(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    enter(u);
    /* One scope for the whole list: a signal that lands between two waits
     * is still seen by the next one (util/interrupt.h). */
    sky_interrupt_scope_begin();
    lua_createtable(L, (int)n, 0);
    int list = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        uint64_t id = (uint64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        int pushed = push_outcome(L, sky_pool_wait(u->pool, id));
        sky_pool_release(u->pool, id);   /* a call abandoned by an interrupt is dropped when it ends */
        if (!lua_toboolean(L, -pushed)) {
            for (lua_Integer j = i + 1; j <= n; j++) {
                lua_rawgeti(L, 2, j);
                sky_pool_release(u->pool, (uint64_t)lua_tointeger(L, -1));
                lua_pop(L, 1);
            }
            sky_interrupt_scope_end();
            leave(u);
            lua_pushinteger(L, i);
            return 3;
        }
        if (pushed >= 2) {
            lua_pushvalue(L, -pushed + 1);
            lua_rawseti(L, list, i);
        }
        lua_settop(L, list);
    }
    sky_interrupt_scope_end();
    leave(u);
    return 1;
}

static const char *error_kind_name(int kind)
{
    switch (kind) {
    case SKY_ERR_USER: return "error";
    case SKY_ERR_TIMEOUT: return "timeout";
    case SKY_ERR_DECODE: return "decode";
    case SKY_ERR_LOST: return "lost";
    case SKY_ERR_INTERRUPTED: return "interrupted";
    default: return "pool";
    }
}

/* Pushes true, results… or false, error table; returns the count pushed. */
static int push_outcome(lua_State *L, const sky_call_outcome *o)
{
    if (o->status == SKY_CALL_OK) {
        lua_pushboolean(L, 1);
        wire_err we;
        int n = wire_decode(state_codec(L), L, o->values, o->values_len, &we);
        if (n >= 0)
            return n + 1;
        lua_pop(L, 1);
        lua_pushboolean(L, 0);
        lua_createtable(L, 0, 6);
        lua_pushfstring(L, "cannot decode the result: %s", we.msg);
        lua_setfield(L, -2, "message");
        lua_pushstring(L, "decode");
        lua_setfield(L, -2, "kind");
    } else {
        lua_pushboolean(L, 0);
        lua_createtable(L, 0, 8);
        lua_pushstring(L, o->message ? o->message : "");
        lua_setfield(L, -2, "message");
        lua_pushstring(L, error_kind_name(o->error_kind));
        lua_setfield(L, -2, "kind");
        lua_pushstring(L, o->traceback ? o->traceback : "");
        lua_setfield(L, -2, "traceback");
    }
    lua_pushinteger(L, o->node);
    lua_setfield(L, -2, "node");
    lua_pushinteger(L, o->worker);
    lua_setfield(L, -2, "worker");
    lua_pushstring(L, o->host ? o->host : "");
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, o->attempts);
    lua_setfield(L, -2, "attempts");
    return 2;
}

/* pool:_wait(id) -> true, results… | false, err. Releases the call. */
static int pool_wait(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    uint64_t id = (uint64_t)luaL_checkinteger(L, 2);
    enter(u);
    int n = push_outcome(L, sky_pool_wait(u->pool, id));
    sky_pool_release(u->pool, id);   /* a call abandoned by an interrupt is dropped when it ends */
    leave(u);
    return n;
}

/* pool:_done(id) -> boolean (one non-blocking turn of the loop). */
static int pool_done(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    uint64_t id = (uint64_t)luaL_checkinteger(L, 2);
    enter(u);
    int done = sky_pool_poll(u->pool, id) != NULL;
    leave(u);
    lua_pushboolean(L, done);
    return 1;
}

/* pool:_stream_open(ids) -> stream id: hands ids out as their calls complete. */
static int pool_stream_open(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    uint64_t *ids = lua_newuserdatauv(L, (n ? n : 1) * sizeof *ids, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        ids[i] = (uint64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    enter(u);
    uint32_t stream = sky_pool_stream_open(u->pool, ids, n);
    leave(u);
    if (!stream)
        return luaL_error(L, "stream: out of memory for %d calls", (int)n);
    lua_pushinteger(L, stream);
    return 1;
}

/* pool:_stream_next(stream) -> the next completed call's id; nil when none
 * is left; false when interrupted. */
static int pool_stream_next(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    uint32_t stream = (uint32_t)luaL_checkinteger(L, 2);
    uint64_t id = 0;
    enter(u);
    int r = sky_pool_stream_next(u->pool, stream, &id);
    leave(u);
    if (r > 0)
        lua_pushinteger(L, (lua_Integer)id);
    else if (r == 0)
        lua_pushnil(L);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* pool:_stream_close(stream, leftovers) — forgets the stream and releases
 * the calls whose ids are the keys of leftovers (those not handed out).
 * Runs from a __close handler, so it never raises for a closed pool: a
 * closed pool took its streams and calls with it. */
static int pool_stream_close(lua_State *L)
{
    pool_ud *u = luaL_checkudata(L, 1, POOL_TYPE);
    uint32_t stream = (uint32_t)luaL_checkinteger(L, 2);
    if (!u->pool)
        return 0;
    sky_pool_stream_close(u->pool, stream);
    if (lua_type(L, 3) == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            if (lua_isinteger(L, -1))
                forget_call(u, (uint64_t)lua_tointeger(L, -1));   /* deferred if a method runs */
        }
    }
    return 0;
}

static int pool_release(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    sky_pool_release(u->pool, (uint64_t)luaL_checkinteger(L, 2));
    return 0;
}

/* pool:_forget(id): a future's finalizer lets go of its call. Finalizers
 * run inside allocations, also in the middle of this pool's methods: then
 * the release waits for leave(). Never raises. */
static void forget_call(pool_ud *u, uint64_t id)
{
    if (!u->pool || !id)
        return;
    if (!u->busy) {
        sky_pool_release(u->pool, id);
        return;
    }
    if (u->nforgotten == u->capforgotten) {
        size_t cap = u->capforgotten ? u->capforgotten * 2 : 16;
        u->forgotten = sky_xrealloc(u->forgotten, cap * sizeof *u->forgotten);
        u->capforgotten = cap;
    }
    u->forgotten[u->nforgotten++] = id;
}

static int pool_forget(lua_State *L)
{
    pool_ud *u = luaL_checkudata(L, 1, POOL_TYPE);
    forget_call(u, (uint64_t)lua_tointeger(L, 2));
    return 0;
}

/* close() and __close: deferred while one of this pool's methods runs. */
static int pool_close(lua_State *L)
{
    pool_ud *u = luaL_checkudata(L, 1, POOL_TYPE);
    if (u->busy) {
        u->close_pending = 1;
        return 0;
    }
    if (u->pool) {
        sky_pool_free(u->pool);
        u->pool = NULL;
    }
    return 0;
}

/* __gc: the userdata is unreachable, so none of its methods is running. */
static int pool_gc(lua_State *L)
{
    pool_ud *u = luaL_checkudata(L, 1, POOL_TYPE);
    if (u->pool) {
        sky_pool_free(u->pool);
        u->pool = NULL;
    }
    free(u->forgotten);
    u->forgotten = NULL;
    u->nforgotten = u->capforgotten = 0;
    return 0;
}

/* pool:info() -> { nodes=, workers=, node = { [0] = facts, … } } */
static int pool_info(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    enter(u);
    int nodes = sky_pool_nodes(u->pool);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, nodes);
    lua_setfield(L, -2, "nodes");
    lua_pushinteger(L, sky_pool_workers_per_node(u->pool));
    lua_setfield(L, -2, "workers");
    lua_createtable(L, nodes, 0);
    for (int n = 0; n < nodes; n++) {
        size_t len = 0;
        const uint8_t *facts = sky_pool_node_facts(u->pool, n, &len);
        wire_err we;
        int top = lua_gettop(L);
        if (facts && wire_decode(state_codec(L), L, facts, len, &we) >= 1) {
            lua_settop(L, top + 1);
            lua_rawseti(L, -2, n);
        }
        lua_settop(L, top);
    }
    leave(u);
    lua_setfield(L, -2, "node");
    return 1;
}

/* pool:pids() -> list of live worker process ids */
static int pool_pids(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    int pids[4096];
    size_t n = sky_pool_worker_pids(u->pool, pids, sizeof pids / sizeof *pids);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, pids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* pool:stats() -> { calls_sent=, defines_sent=, bytes_sent=, bytes_received=, retries=, workers_lost= } */
static int pool_stats(lua_State *L)
{
    pool_ud *u = check_pool(L, 1);
    sky_pool_stats st;
    sky_pool_get_stats(u->pool, &st);
    lua_createtable(L, 0, 7);
#define FIELD(name) (lua_pushinteger(L, (lua_Integer)st.name), lua_setfield(L, -2, #name))
    FIELD(calls_sent);
    FIELD(defines_sent);
    FIELD(bytes_sent);
    FIELD(bytes_received);
    FIELD(retries);
    FIELD(workers_lost);
    FIELD(calls_moved);
    FIELD(calls_held);
#undef FIELD
    return 1;
}

static int pool_tostring(lua_State *L)
{
    pool_ud *u = luaL_checkudata(L, 1, POOL_TYPE);
    if (!u->pool)
        lua_pushliteral(L, "sky.pool (closed)");
    else
        lua_pushfstring(L, "sky.pool (%d nodes x %d workers)", sky_pool_nodes(u->pool),
                        sky_pool_workers_per_node(u->pool));
    return 1;
}

static const luaL_Reg pool_methods[] = {
    { "_submit", pool_submit },
    { "_wait", pool_wait },
    { "_submit_each", pool_submit_each },
    { "_wait_each", pool_wait_each },
    { "_stream_open", pool_stream_open },
    { "_stream_next", pool_stream_next },
    { "_stream_close", pool_stream_close },
    { "_done", pool_done },
    { "_release", pool_release },
    { "_forget", pool_forget },
    { "close", pool_close },
    { "info", pool_info },
    { "pids", pool_pids },
    { "stats", pool_stats },
    { NULL, NULL },
};

static const luaL_Reg pool_meta[] = {
    { "__gc", pool_gc },
    { "__close", pool_close },
    { "__tostring", pool_tostring },
    { NULL, NULL },
};

/* core.now() -> monotonic seconds (float), for timing pipelines. */
static int monotonic_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.register_metatable(name, mt): tables with mt travel with it (wire.h). */
static int register_metatable(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    wire_err err;
    if (wire_codec_register_metatable(state_codec(L), L, name, 2, &err) != 0)
        return luaL_error(L, "%s", err.msg);
    return 0;
}

void sky_lua_open_compute(lua_State *L)
{
    luaL_newmetatable(L, POOL_TYPE);
    luaL_setfuncs(L, pool_meta, 0);
    luaL_newlib(L, pool_methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, "pool_methods");   /* core.pool_methods: lua/sky.lua adds the verbs */
    lua_pop(L, 1);
    lua_pushcfunction(L, pool_new);
    lua_setfield(L, -2, "pool_new");
    lua_pushcfunction(L, provider_config);
    lua_setfield(L, -2, "provider_config");
    lua_pushcfunction(L, monotonic_now);
    lua_setfield(L, -2, "now");
    lua_pushcfunction(L, register_metatable);
    lua_setfield(L, -2, "register_metatable");
}
