/*
 * storage: C glue from Lua to the S3 client — `sky.core.storage_new(opts,
 * preset, profile)` builds a storage userdata whose methods (upload,
 * download, ls, exists, rm, put, get, copy, presign, create_bucket,
 * delete_bucket, close) call src/s3/client.h, whose rules (where a copy
 * lands, what `retries` means) are the CLI's too. lua/storage.lua shapes
 * the user-facing `sky.storage` (presets, from core.storage_presets;
 * profiles). Failures raise the client's message ("s3 get s3://b/k:
 * NoSuchKey: …"); misuse raises an argument error.
 * `close`, `__close` and `__gc` are one idempotent function.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/bindings.h"
#include "lua/storage.h"
#include "s3/credentials.h"
#include "s3/multipart.h"
#include "s3/presets.h"
#include "util/alloc.h"
#include "util/interrupt.h"
#include "util/log.h"

typedef struct storage_ud {
    s3_client *client;
} storage_ud;

s3_client *sky_lua_check_storage(lua_State *L, int idx)
{
    storage_ud *ud = luaL_checkudata(L, idx, SKY_STORAGE_TYPE);
    if (!ud->client)
        luaL_error(L, "storage is closed");
    return ud->client;
}

/* Raises err's text; the caller has freed everything it owned. */
static int raise_s3(lua_State *L, const s3_error *err)
{
    return luaL_error(L, "%s", err->text);
}

/* ---- construction ---- */

static const char *const known_options[] = {
    "endpoint", "region", "access_key", "secret_key", "session_token", "path_style",
    "ca_bundle", "verify_tls", "profile", "account_id", "part_size", "parallel",
    "retries", "progress", NULL,
};

static void check_option_names(lua_State *L, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *name = lua_tostring(L, -1);
            for (int i = 0; known_options[i]; i++)
                known |= strcmp(name, known_options[i]) == 0;
        }
        if (!known) {
            luaL_Buffer b;
            const char *name = luaL_tolstring(L, -1, NULL);
            luaL_buffinit(L, &b);
            for (int i = 0; known_options[i]; i++) {
                if (i)
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, known_options[i]);
            }
            luaL_pushresult(&b);
            luaL_error(L, "sky.storage: unknown option '%s' (known: %s)", name, lua_tostring(L, -1));
        }
    }
}

static char *opt_string(lua_State *L, int idx, const char *name)
{
    int t = lua_getfield(L, idx, name);
    const char *s = NULL;
    if (t == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "sky.storage: option '%s' must be a string, not a %s", name, luaL_typename(L, -1));
    lua_pop(L, 1);   /* the string stays alive: the options table holds it */
    return (char *)s;
}

/* -1 when absent, else 0/1. */
static int opt_bool(lua_State *L, int idx, const char *name)
{
    int t = lua_getfield(L, idx, name);
    int v = -1;
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "sky.storage: option '%s' must be a boolean", name);
    lua_pop(L, 1);
    return v;
}

/* An integer option in [lo, hi]; `absent` when it is not given. */
static lua_Integer opt_int(lua_State *L, int idx, const char *name, lua_Integer lo, lua_Integer hi,
                           lua_Integer absent)
{
    int t = lua_getfield(L, idx, name);
    lua_Integer v = absent;
    if (t != LUA_TNIL) {
        int isnum = 0;
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v < lo || v > hi)
            luaL_error(L, "sky.storage: option '%s' must be an integer from %I to %I", name, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

/* A host option (registry "sky.options", set by sky_host), or NULL / -1. */
static const char *host_option_string(lua_State *L, const char *name)
{
    const char *s = NULL;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "sky.options") == LUA_TTABLE) {
        if (lua_getfield(L, -1, name) == LUA_TSTRING)
            s = lua_tostring(L, -1);   /* kept alive by the registry table */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return s;
}

static int host_progress(lua_State *L)
{
    int v = -1;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "sky.options") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "progress") == LUA_TNUMBER)
            v = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

static int storage_new(lua_State *L)
{
    s3_settings given, resolved;
    s3_client_options copts = S3_CLIENT_OPTIONS_INIT;
    char why[512];
    s3_error err;

    if (lua_isnoneornil(L, 1))
        lua_newtable(L), lua_replace(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *preset = luaL_optstring(L, 2, NULL);
    const char *profile = luaL_optstring(L, 3, NULL);
    check_option_names(L, 1);

    memset(&given, 0, sizeof given);
    given.endpoint = opt_string(L, 1, "endpoint");
    given.region = opt_string(L, 1, "region");
    given.access_key = opt_string(L, 1, "access_key");
    given.secret_key = opt_string(L, 1, "secret_key");
    given.session_token = opt_string(L, 1, "session_token");
    given.ca_bundle = opt_string(L, 1, "ca_bundle");
    given.account_id = opt_string(L, 1, "account_id");
    given.config_file = (char *)host_option_string(L, "config");
    int path_style = opt_bool(L, 1, "path_style"), verify_tls = opt_bool(L, 1, "verify_tls");
    given.path_style_set = path_style >= 0;
    given.path_style = path_style > 0;
    given.verify_tls_set = verify_tls >= 0;
    given.verify_tls = verify_tls != 0;
    if (!profile)
        profile = opt_string(L, 1, "profile");
    if (!profile)
        profile = host_option_string(L, "profile");
    copts.part_size = (size_t)opt_int(L, 1, "part_size", 0, (lua_Integer)S3_MAX_PART_SIZE, 0);
    copts.parallel = (int)opt_int(L, 1, "parallel", 0, S3_MAX_PARALLEL, 0);
    copts.retries = (int)opt_int(L, 1, "retries", 0, S3_MAX_RETRIES, -1);
    int progress = opt_bool(L, 1, "progress");
    copts.progress = progress >= 0 ? progress : host_progress(L);
    if (given.secret_key)
        sky_secret_register(given.secret_key);
    if (given.session_token)
        sky_secret_register(given.session_token);

    storage_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
    ud->client = NULL;
    luaL_setmetatable(L, SKY_STORAGE_TYPE);

    if (s3_settings_resolve(&given, preset, profile, &resolved, why, sizeof why) != 0) {
        s3_settings_free(&resolved);
        sky_redact(why);
        return luaL_error(L, "sky.storage: %s", why);
    }
    ud->client = s3_client_new(&resolved, &copts, &err);
    s3_settings_free(&resolved);
    if (!ud->client)
        return raise_s3(L, &err);
    return 1;
}

/* ---- methods ---- */

static int storage_close(lua_State *L)
{
    storage_ud *ud = luaL_checkudata(L, 1, SKY_STORAGE_TYPE);
    s3_client_free(ud->client);
    ud->client = NULL;
    return 0;
}

static int storage_tostring(lua_State *L)
{
    storage_ud *ud = luaL_checkudata(L, 1, SKY_STORAGE_TYPE);
    if (!ud->client)
        lua_pushstring(L, "sky.storage (closed)");
    else
        lua_pushfstring(L, "sky.storage (%s)", s3_client_settings(ud->client)->endpoint);
    return 1;
}

static const char *opt_field_string(lua_State *L, int idx, const char *name, const char *def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    luaL_checktype(L, idx, LUA_TTABLE);
    int t = lua_getfield(L, idx, name);
    const char *s = def;
    if (t == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "option '%s' must be a string", name);
    lua_pop(L, 1);
    return s;
}

static int opt_field_bool(lua_State *L, int idx, const char *name, int def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    luaL_checktype(L, idx, LUA_TTABLE);
    int t = lua_getfield(L, idx, name);
    int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* upload(bucket, path [, {key=, content_type=}]) → number of files.
 * Where it lands is target.h's rule, the same as `skyrun s3 cp`. */
static int storage_upload(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    const char *key = opt_field_string(L, 4, "key", NULL);
    const char *content_type = opt_field_string(L, 4, "content_type", NULL);
    size_t count = 0;
    s3_error err;
    sky_interrupt_scope_begin();   /* Ctrl-C reaches the transfer under stock lua5.4 too */
    int failed = s3_upload_path(c, bucket, key, path, content_type, &count, NULL, &err) != 0;
    sky_interrupt_scope_end();
    if (failed)
        return raise_s3(L, &err);
    lua_pushinteger(L, (lua_Integer)count);
    return 1;
}

/* download(bucket, key_or_prefix/, path) → number of files (target.h's
 * rule, the same as `skyrun s3 cp`). */
static int storage_download(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    const char *path = luaL_checkstring(L, 4);
    size_t count = 0;
    s3_error err;
    sky_interrupt_scope_begin();   /* Ctrl-C reaches the transfer under stock lua5.4 too */
    int failed = s3_download_path(c, bucket, key, path, &count, NULL, &err) != 0;
    sky_interrupt_scope_end();
    if (failed)
        return raise_s3(L, &err);
    lua_pushinteger(L, (lua_Integer)count);
    return 1;
}

/* ---- sync and mv ---- */

/* The filters of a sync's options, in a userdata at the top of the stack
 * (collected with it, so a later argument error leaks nothing): first every
 * `exclude` pattern, then every `include` one (exclude everything, include
 * some: the usual order), or `filters = { {exclude=P}, {include=P}, … }` in
 * any order (the last match wins). The patterns stay alive in the options
 * table. */
static s3_sync_filter *sync_filters(lua_State *L, int opts, size_t *n)
{
    size_t cap = 0;
    *n = 0;
    if (lua_isnoneornil(L, opts)) {
        lua_newuserdatauv(L, 1, 0);
        return NULL;
    }
    static const char *const lists[] = { "exclude", "include", "filters" };
    for (int k = 0; k < 3; k++) {
        int t = lua_getfield(L, opts, lists[k]);
        if (t == LUA_TSTRING && k < 2)
            cap++;
        else if (t == LUA_TTABLE)
            cap += lua_rawlen(L, -1);
        else if (t != LUA_TNIL)
            luaL_error(L, "sync: option '%s' must be a list", lists[k]);
        lua_pop(L, 1);
    }
    s3_sync_filter *f = lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *f, 0);
    for (int k = 0; k < 3; k++) {
        int t = lua_getfield(L, opts, lists[k]);
        size_t len = t == LUA_TTABLE ? lua_rawlen(L, -1) : t == LUA_TSTRING ? 1 : 0;
        for (size_t i = 1; i <= len && *n < cap; i++) {
            if (t == LUA_TSTRING) {
                f[(*n)++] = (s3_sync_filter){ k == 1, lua_tostring(L, -1) };
                continue;
            }
            lua_rawgeti(L, -1, (lua_Integer)i);
            if (k < 2) {
                if (lua_type(L, -1) != LUA_TSTRING)
                    luaL_error(L, "sync: %s[%d] must be a string pattern", lists[k], (int)i);
                f[(*n)++] = (s3_sync_filter){ k == 1, lua_tostring(L, -1) };
            } else {
                int ok = lua_type(L, -1) == LUA_TTABLE;
                int inc = ok && lua_getfield(L, -1, "include") == LUA_TSTRING;
                if (ok && !inc) {
                    lua_pop(L, 1);
                    ok = lua_getfield(L, -1, "exclude") == LUA_TSTRING;
                }
                if (!ok)
                    luaL_error(L, "sync: filters[%d] must be {exclude=PATTERN} or {include=PATTERN}", (int)i);
                f[(*n)++] = (s3_sync_filter){ inc, lua_tostring(L, -1) };
                lua_pop(L, 1);
            }
            lua_pop(L, 1);   /* the strings stay alive in the options table */
        }
        lua_pop(L, 1);
    }
    return f;
}

/* The actions a sync reports, kept in C while it runs: the report comes
 * from inside the transfer loop, where a Lua error (out of memory) must
 * not unwind; they become Lua tables once s3_sync has returned. */
typedef struct sync_action_list {
    char **lines;        /* op, from, to (NULL for deletes) per action */
    size_t n, cap;
} sync_action_list;

static void sync_report(void *ud, const char *op, const char *from, const char *to)
{
    sync_action_list *l = ud;
    if (l->n + 3 > l->cap) {
        l->cap = l->cap ? l->cap * 2 : 48;
        l->lines = sky_xrealloc(l->lines, l->cap * sizeof *l->lines);
    }
    l->lines[l->n++] = sky_xstrdup(op);
    l->lines[l->n++] = sky_xstrdup(from);
    l->lines[l->n++] = to ? sky_xstrdup(to) : NULL;
}

static void sync_actions_free(sync_action_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->lines[i]);
    free(l->lines);
    l->lines = NULL;
    l->n = l->cap = 0;
}

/* __gc of the userdata that holds the list: freed however the call ends. */
static int sync_actions_gc(lua_State *L)
{
    sync_actions_free(lua_touserdata(L, 1));
    return 0;
}

/* sync(src, dst [, {delete=, dryrun=, checksum=, exclude={…}, include={…},
 * filters={…}}]) and mv(src, dst [, {dryrun=, exclude=, include=, filters=}])
 * → {copied=, deleted=, unchanged=, excluded=, bytes=, actions={{op=, from=, to=}…}};
 * src and dst are a local folder or "s3://bucket/prefix" (s3/sync.h's rules). */
static int storage_sync_or_mv(lua_State *L, int move)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *src = luaL_checkstring(L, 2);
    const char *dst = luaL_checkstring(L, 3);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4);
    size_t nfilters;
    s3_sync_filter *filters = sync_filters(L, 4, &nfilters);   /* stack 5 */
    s3_sync_request req = { src, dst, filters, nfilters, move ? 0 : opt_field_bool(L, 4, "delete", 0),
                            opt_field_bool(L, 4, "dryrun", 0), move ? 0 : opt_field_bool(L, 4, "checksum", 0),
                            move, sync_report, NULL };
    sync_action_list *actions = lua_newuserdatauv(L, sizeof *actions, 0);   /* stack 6 */
    memset(actions, 0, sizeof *actions);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sync_actions_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    req.report_ud = actions;
    s3_sync_summary sum;
    s3_error err;
    sky_interrupt_scope_begin();   /* Ctrl-C reaches the transfers under stock lua5.4 too */
    int failed = s3_sync(c, &req, &sum, &err) != 0;
    sky_interrupt_scope_end();
    if (failed)
        return raise_s3(L, &err);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)sum.copied);
    lua_setfield(L, -2, "copied");
    lua_pushinteger(L, (lua_Integer)sum.deleted);
    lua_setfield(L, -2, "deleted");
    lua_pushinteger(L, (lua_Integer)sum.unchanged);
    lua_setfield(L, -2, "unchanged");
    lua_pushinteger(L, (lua_Integer)sum.excluded);
    lua_setfield(L, -2, "excluded");
    lua_pushinteger(L, (lua_Integer)sum.bytes);
    lua_setfield(L, -2, "bytes");
    lua_createtable(L, (int)(actions->n / 3), 0);
    for (size_t i = 0; i + 2 < actions->n; i += 3) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, actions->lines[i]);
        lua_setfield(L, -2, "op");
        lua_pushstring(L, actions->lines[i + 1]);
        lua_setfield(L, -2, "from");
        if (actions->lines[i + 2]) {
            lua_pushstring(L, actions->lines[i + 2]);
            lua_setfield(L, -2, "to");
        }
        lua_rawseti(L, -2, (lua_Integer)(i / 3 + 1));
    }
    lua_setfield(L, -2, "actions");
    sync_actions_free(actions);
    return 1;
}

static int storage_sync(lua_State *L)
{
    return storage_sync_or_mv(L, 0);
}

static int storage_mv(lua_State *L)
{
    return storage_sync_or_mv(L, 1);
}

typedef struct ls_state {
    lua_State *L;
    int details;
    lua_Integer n;
} ls_state;

static int ls_add(void *ud, const s3_object_info *o)
{
    ls_state *st = ud;
    lua_State *L = st->L;
    if (st->details) {
        lua_createtable(L, 0, 5);
        lua_pushstring(L, o->key);
        lua_setfield(L, -2, "key");
        lua_pushinteger(L, (lua_Integer)o->size);
        lua_setfield(L, -2, "size");
        lua_pushstring(L, o->etag);
        lua_setfield(L, -2, "etag");
        lua_pushinteger(L, (lua_Integer)o->mtime);
        lua_setfield(L, -2, "mtime");
        if (o->is_prefix) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "prefix");
        }
    } else {
        lua_pushstring(L, o->key);
    }
    lua_rawseti(L, -2, ++st->n);
    return 0;
}

/* ls(bucket, prefix [, {recursive=true, details=false}]) → list */
static int storage_ls(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *prefix = luaL_optstring(L, 3, "");
    int recursive = opt_field_bool(L, 4, "recursive", 1);
    ls_state st = { L, opt_field_bool(L, 4, "details", 0), 0 };
    s3_error err;
    lua_newtable(L);
    luaL_checkstack(L, 8, "ls");
    if (s3_list(c, bucket, prefix, recursive, ls_add, &st, &err) != 0)
        return raise_s3(L, &err);
    return 1;
}

static int storage_exists(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    s3_error err;
    int rc = s3_head_object(c, bucket, key, NULL, &err);
    if (rc < 0 || (rc == 1 && strcmp(err.code, "NoSuchBucket") == 0)) {
        /* A missing key is an answer; a missing bucket or a failure is not. */
        return raise_s3(L, &err);
    }
    lua_pushboolean(L, rc == 0);
    return 1;
}

/* rm(bucket, key_or_prefix [, {recursive=true}]) → number of keys deleted */
static int storage_rm(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    int recursive = opt_field_bool(L, 4, "recursive", 0);
    s3_error err;
    size_t deleted = 1;
    int rc = recursive ? s3_delete_prefix(c, bucket, key, &deleted, &err)
                       : s3_delete_object(c, bucket, key, &err);
    if (rc != 0)
        return raise_s3(L, &err);
    lua_pushinteger(L, (lua_Integer)deleted);
    return 1;
}

static int storage_put(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    size_t len;
    const char *data = luaL_checklstring(L, 4, &len);
    const char *content_type = opt_field_string(L, 5, "content_type", NULL);
    s3_error err;
    if (s3_put_object(c, bucket, key, data, len, content_type, &err) != 0)
        return raise_s3(L, &err);
    return 0;
}

static int storage_get(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    sky_buf body = SKY_BUF_INIT;
    s3_error err;
    if (s3_get_object(c, bucket, key, &body, &err) != 0) {
        sky_buf_free(&body);
        return raise_s3(L, &err);
    }
    lua_pushlstring(L, body.data ? (const char *)body.data : "", body.len);
    sky_buf_free(&body);
    return 1;
}

static int storage_copy(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *sb = luaL_checkstring(L, 2), *sk = luaL_checkstring(L, 3);
    const char *db = luaL_checkstring(L, 4), *dk = luaL_checkstring(L, 5);
    s3_error err;
    if (s3_copy_object(c, sb, sk, db, dk, &err) != 0)
        return raise_s3(L, &err);
    return 0;
}

/* presign(bucket, key [, {method="GET", expires=3600}]) → URL */
static int storage_presign(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    const char *bucket = luaL_checkstring(L, 2);
    const char *key = luaL_checkstring(L, 3);
    const char *method = opt_field_string(L, 4, "method", "GET");
    lua_Integer expires = 3600;
    if (!lua_isnoneornil(L, 4)) {
        if (lua_getfield(L, 4, "expires") != LUA_TNIL) {
            int isnum;
            expires = lua_tointegerx(L, -1, &isnum);
            if (!isnum)
                return luaL_argerror(L, 4, "expires must be an integer number of seconds");
        }
        lua_pop(L, 1);
    }
    if (expires < 1 || expires > S3_PRESIGN_MAX_EXPIRES)
        return luaL_argerror(L, 4, lua_pushfstring(L, "expires must be 1 to %d seconds",
                                                   S3_PRESIGN_MAX_EXPIRES));
    sky_buf url = SKY_BUF_INIT;
    s3_error err;
    if (s3_presign(c, bucket, key, method, (unsigned)expires, &url, &err) != 0) {
        sky_buf_free(&url);
        return raise_s3(L, &err);
    }
    lua_pushlstring(L, (const char *)url.data, url.len);
    sky_buf_free(&url);
    return 1;
}

static int storage_create_bucket(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    s3_error err;
    if (s3_create_bucket(c, luaL_checkstring(L, 2), &err) != 0)
        return raise_s3(L, &err);
    return 0;
}

static int storage_delete_bucket(lua_State *L)
{
    s3_client *c = sky_lua_check_storage(L, 1);
    s3_error err;
    if (s3_delete_bucket(c, luaL_checkstring(L, 2), &err) != 0)
        return raise_s3(L, &err);
    return 0;
}

static const luaL_Reg storage_methods[] = {
    { "upload", storage_upload },   { "download", storage_download },
    { "sync", storage_sync },       { "mv", storage_mv },
    { "ls", storage_ls },           { "exists", storage_exists },
    { "rm", storage_rm },           { "put", storage_put },
    { "get", storage_get },         { "copy", storage_copy },
    { "presign", storage_presign }, { "create_bucket", storage_create_bucket },
    { "delete_bucket", storage_delete_bucket }, { "close", storage_close },
    { NULL, NULL },
};

static const luaL_Reg storage_meta[] = {
    { "__gc", storage_close },
    { "__close", storage_close },
    { "__tostring", storage_tostring },
    { "__index", NULL },
    { NULL, NULL },
};

void sky_lua_open_storage(lua_State *L)
{
    if (luaL_newmetatable(L, SKY_STORAGE_TYPE)) {
        luaL_setfuncs(L, storage_meta, 0);
        luaL_newlib(L, storage_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, storage_new);
    lua_setfield(L, -2, "storage_new");
    /* The preset names, from the one list (s3/presets.h): lua/storage.lua
     * makes a constructor for each. */
    lua_newtable(L);
    for (size_t i = 0; s3_preset_at(i); i++) {
        lua_pushstring(L, s3_preset_at(i)->name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "storage_presets");
}
