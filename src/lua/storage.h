/*
 * storage: the `sky.storage` userdata (storage.c). Other bindings that take
 * a storage object (volumes) get its S3 client — and through
 * s3_client_settings() its endpoint and credentials — from here.
 */
#ifndef SKY_LUA_STORAGE_H
#define SKY_LUA_STORAGE_H

#include <lua.h>

#include "s3/client.h"

#define SKY_STORAGE_TYPE "sky.storage"

/* The open client of the storage object at idx; raises a Lua error when the
 * value is not a storage object or has been closed. */
s3_client *sky_lua_check_storage(lua_State *L, int idx);

#endif
