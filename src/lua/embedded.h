/* embedded: the pure-Lua parts of the `sky` module (lua/NAME.lua files), compiled in by
 * cmake/embed_lua.cmake so the binaries need no Lua files at run time. */
#ifndef SKY_LUA_EMBEDDED_H
#define SKY_LUA_EMBEDDED_H

#include <stddef.h>

typedef struct sky_embedded_lua {
    const char *name;   /* file name without .lua: "sky", "storage", … */
    const char *code;
    size_t size;
} sky_embedded_lua;

/* Terminated by an entry whose name is NULL. */
extern const sky_embedded_lua sky_embedded_lua_files[];

#endif
