/*
 * test_host_embedding: the public C API (include/skyrun.h) as an embedding
 * program uses it — its own lua_State handed to skyrun, its own allocator,
 * and start-up in protected mode: an allocation failure anywhere while
 * Lua and the `sky` module start gives NULL and a message, never a panic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "skyrun.h"

static int program_function(lua_State *L)
{
    lua_pushinteger(L, luaL_checkinteger(L, 1) + 1000);
    return 1;
}

static void a_program_state_gets_sky_and_stays_open(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_register(L, "program_function", program_function);
    lua_pushinteger(L, 7);
    lua_setglobal(L, "program_value");
    sky_host_options o = { .progress = 0, .L = L };
    char err[512] = "";
    sky_host *h = sky_host_create(&o, err, sizeof err);
    if (!h)
        fail_msg("sky_host_create: %s", err);
    assert_ptr_equal(sky_host_lua(h), L);
    int rc = sky_host_run_string(h,
        "local pool <close> = sky.compute {}\n"
        "result = (sky.fn(function(x) return x * 6 end)(program_value) >> pool)\n"
        "result = program_function(result)\n", "=test");
    if (rc != 0)
        fail_msg("run: %s", sky_host_error(h));
    sky_host_free(h);
    /* The program's state is still its own, with what the script left. */
    lua_getglobal(L, "result");
    assert_int_equal(lua_tointeger(L, -1), 1042);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "sky");
    assert_true(lua_istable(L, -1));
    lua_settop(L, 0);
    lua_close(L);
}

typedef struct counting {
    size_t allocations;
    size_t fail_after;   /* SIZE_MAX: never */
} counting;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counting *c = ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (!ptr || nsize > osize) {
        if (c->allocations >= c->fail_after)
            return NULL;
        c->allocations++;
    }
    return realloc(ptr, nsize);
}

static void the_host_uses_the_program_allocator(void **state)
{
    (void)state;
    counting c = { 0, SIZE_MAX };
    sky_host_options o = { .progress = 0, .alloc = counting_alloc, .alloc_ud = &c };
    sky_host *h = sky_host_create(&o, NULL, 0);
    assert_non_null(h);
    assert_true(c.allocations > 100);   /* Lua and the module were built with it */
    size_t before = c.allocations;
    assert_int_equal(sky_host_run_string(h, "local t = {} for i = 1, 1000 do t[i] = {i} end", "=t"), 0);
    assert_true(c.allocations > before + 1000);
    sky_host_free(h);
}

static void an_allocation_failure_at_start_up_is_an_error_never_a_panic(void **state)
{
    (void)state;
    counting full = { 0, SIZE_MAX };
    sky_host_options o = { .progress = 0, .alloc = counting_alloc, .alloc_ud = &full };
    sky_host *h = sky_host_create(&o, NULL, 0);
    assert_non_null(h);
    sky_host_free(h);
    size_t needed = full.allocations;
    /* Fail the n-th allocation, for every n start-up makes (a panic would abort the test). */
    for (size_t n = 0; n < needed; n += 1 + n / 64) {
        counting c = { 0, n };
        o.alloc_ud = &c;
        char err[512] = "";
        h = sky_host_create(&o, err, sizeof err);
        if (h) {
            sky_host_free(h);
            continue;
        }
        if (!strstr(err, "skyrun:"))
            fail_msg("allocation %zu failed without a message: '%s'", n, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_program_state_gets_sky_and_stays_open),
        cmocka_unit_test(the_host_uses_the_program_allocator),
        cmocka_unit_test(an_allocation_failure_at_start_up_is_an_error_never_a_panic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
