/*
 * sky: the `sky` Lua module's entry point (luaopen_sky).
 *
 * Builds the C core table (registered as package.loaded["sky.core"]),
 * registers every embedded lua/NAME.lua as package.preload["sky.NAME"],
 * then runs the embedded lua/sky.lua, which returns the module.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "skyrun.h"
#include "skyrun_config.h"
#include "lua/bindings.h"
#include "lua/embedded.h"

static const sky_embedded_lua *find_embedded(const char *name)
{
    for (const sky_embedded_lua *e = sky_embedded_lua_files; e->name; e++)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static int load_embedded(lua_State *L, const sky_embedded_lua *e)
{
    char chunkname[64];
    snprintf(chunkname, sizeof chunkname, "=[sky/%s.lua]", e->name);
    return luaL_loadbufferx(L, e->code, e->size, chunkname, "t");
}

/* package.preload loader for "sky.NAME": runs the embedded lua/NAME.lua. */
static int preload_embedded(lua_State *L)
{
    const sky_embedded_lua *e = lua_touserdata(L, lua_upvalueindex(1));
    if (load_embedded(L, e) != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

const char *sky_version(void) { return SKYRUN_VERSION; }

int luaopen_sky(lua_State *L)
{
    luaL_checkversion(L);

    lua_newtable(L);                                     /* core */
    lua_pushstring(L, SKYRUN_VERSION);
    lua_setfield(L, -2, "version");
    sky_lua_open_compute(L);
    sky_lua_open_storage(L);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "sky.core");
    lua_pop(L, 1);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const sky_embedded_lua *e = sky_embedded_lua_files; e->name; e++) {
        if (strcmp(e->name, "sky") == 0)
            continue;
        char modname[64];
        snprintf(modname, sizeof modname, "sky.%s", e->name);
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, preload_embedded, 1);
        lua_setfield(L, -2, modname);
    }
    lua_pop(L, 1);

    const sky_embedded_lua *main = find_embedded("sky");
    if (!main)
        return luaL_error(L, "sky: the embedded lua/sky.lua is missing from this build");
    if (load_embedded(L, main) != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, -2);                                /* core as the chunk's `...` */
    lua_call(L, 1, 1);
    return 1;
}
