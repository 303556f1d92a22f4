/*
 * bindings: the openers of the `sky` module's C parts. luaopen_sky builds
 * one "core" table (package.loaded["sky.core"]) and each opener adds its
 * functions to it; lua/sky.lua then shapes the user-facing module.
 */
#ifndef SKY_LUA_BINDINGS_H
#define SKY_LUA_BINDINGS_H

#include <lua.h>

/* Each adds fields to the table on top of the stack and leaves the stack as it found it. */
void sky_lua_open_compute(lua_State *L);   /* compute.c: pools and remote calls */
void sky_lua_open_storage(lua_State *L);   /* storage.c: S3 storage objects */

#endif
