/*
 * sky_module: what a function running on a worker sees as `sky`
 * (sky.instance_info, sky.shard), and the node's facts sent in HELLO.
 */
#include "worker/worker.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLACE_KEY "skyrun.worker.place"

static struct worker_place *get_place(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, PLACE_KEY);
    struct worker_place *p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return p;
}

/* "Model: \t NVIDIA H100 80GB HBM3" -> "NVIDIA H100 80GB HBM3" */
static int read_gpu_model(const char *path, char *model, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "Model:", 6) != 0)
            continue;
        char *s = line + 6;
        s += strspn(s, " \t");
        size_t n = strcspn(s, "\r\n");
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        snprintf(model, cap, "%.*s", (int)n, s);
        found = 0;
    }
    fclose(f);
    return found;
}

static int by_bus(const void *a, const void *b)
{
    return strcmp(((const struct gpu *)a)->bus, ((const struct gpu *)b)->bus);
}

/* The node's NVIDIA GPUs, from the driver's /proc files (or from the folder
 * $SKYRUN_GPU_INFO_DIR in the same format: fixtures for tests), sorted by
 * bus id — the order of CUDA_DEVICE_ORDER=PCI_BUS_ID. Returns the count. */
int sky_gpus(struct gpu *out, int max)
{
    const char *root = getenv("SKYRUN_GPU_INFO_DIR");
    if (!root || !*root)
        root = "/proc/driver/nvidia/gpus";
    DIR *d = opendir(root);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s/information", root, e->d_name);
        if (read_gpu_model(path, out[n].model, sizeof out[n].model) < 0)
            continue;
        snprintf(out[n].bus, sizeof out[n].bus, "%.63s", e->d_name);
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, by_bus);
    return n;
}

/* Pushes { {name = "NVIDIA …", bus = "0000:…"}, … }; an empty list where
 * there is no such driver. */
static void push_accelerators(lua_State *L)
{
    struct gpu gpus[SKY_MAX_GPUS];
    int n = sky_gpus(gpus, SKY_MAX_GPUS);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, gpus[i].model);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, gpus[i].bus);
        lua_setfield(L, -2, "bus");
        lua_rawseti(L, -2, i + 1);
    }
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

void sky_push_facts(lua_State *L)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, host);
    lua_setfield(L, -2, "hostname");
    set_int(L, "pid", (lua_Integer)getpid());
    set_int(L, "cores", (lua_Integer)sysconf(_SC_NPROCESSORS_ONLN));
    set_int(L, "memory", pages > 0 && page > 0 ? (lua_Integer)pages * page : 0);
    push_accelerators(L);
    lua_setfield(L, -2, "accelerators");
    lua_pushstring(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
}

static int sky_instance_info(lua_State *L)
{
    struct worker_place *p = get_place(L);
    sky_push_facts(L);
    /* The GPUs this worker was given (SETUP), when the pool asked for some. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, SKY_WORKER_GPUS_KEY) == LUA_TTABLE)
        lua_setfield(L, -2, "accelerators");
    else
        lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "lua");
    set_int(L, "node", p->node);
    set_int(L, "nodes", p->nodes);
    set_int(L, "worker", p->worker);
    set_int(L, "workers", p->workers);
    if (p->node_name[0]) {
        lua_pushstring(L, p->node_name);
        lua_setfield(L, -2, "node_name");
    }
    return 1;
}

/* sky.shard(list [, {by = "node"|"worker"}]): this node's (or this
 * worker's) contiguous slice of the sequence; slices differ in length by
 * at most one and cover the list in order. */
static int sky_shard(lua_State *L)
{
    struct worker_place *p = get_place(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *by = "node";
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "by");
        by = luaL_optstring(L, -1, "node");
    }
    lua_Integer parts, rank;
    if (strcmp(by, "node") == 0) {
        parts = p->nodes;
        rank = p->node;
    } else if (strcmp(by, "worker") == 0) {
        parts = p->nodes * p->workers;
        rank = p->node * p->workers + p->worker;
    } else {
        return luaL_error(L, "sky.shard: opts.by must be \"node\" or \"worker\", not \"%s\"", by);
    }
    lua_Integer n = luaL_len(L, 1);
    lua_Integer first = n * rank / parts, last = n * (rank + 1) / parts;
    lua_createtable(L, (int)(last - first), 0);
    for (lua_Integer i = first; i < last; i++) {
        lua_geti(L, 1, i + 1);
        lua_rawseti(L, -2, i - first + 1);
    }
    return 1;
}

void sky_module_open(lua_State *L, struct worker_place *place)
{
    static const luaL_Reg funcs[] = {
        { "instance_info", sky_instance_info },
        { "shard", sky_shard },
        { NULL, NULL },
    };
    lua_pushlightuserdata(L, place);
    lua_setfield(L, LUA_REGISTRYINDEX, PLACE_KEY);
    luaL_newlib(L, funcs);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "sky");
    lua_pop(L, 1);
    lua_setglobal(L, "sky");
}
