/* test_s3_target: where a copy lands (src/s3/target.c) — aws-cli's rules,
 * shared by sky.storage and `skyrun s3 cp`. tests/s3/test_targets.sh
 * checks the same rules end to end from both front-ends against aws-cli. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3/target.h"

static char *key_for(const char *src, const char *key)
{
    static char out[256];
    sky_buf b = SKY_BUF_INIT;
    s3_target_key(src, key, &b);
    snprintf(out, sizeof out, "%s", sky_buf_cstr(&b));
    sky_buf_free(&b);
    return out;
}

static char *prefix_for(const char *key)
{
    static char out[256];
    sky_buf b = SKY_BUF_INIT;
    s3_target_prefix(key, &b);
    snprintf(out, sizeof out, "%s", sky_buf_cstr(&b));
    sky_buf_free(&b);
    return out;
}

static char *file_for(const char *key, const char *dest)
{
    static char out[PATH_MAX];
    sky_buf b = SKY_BUF_INIT;
    s3_target_file(key, dest, &b);
    snprintf(out, sizeof out, "%s", sky_buf_cstr(&b));
    sky_buf_free(&b);
    return out;
}

static void a_file_to_a_prefix_keeps_its_name(void **state)
{
    assert_string_equal(key_for("data/f.txt", "dir/"), "dir/f.txt");
    assert_string_equal(key_for("f.txt", "a/b/"), "a/b/f.txt");
    assert_string_equal(key_for("/abs/path/f.txt", ""), "f.txt");   /* s3://bucket */
}

static void a_file_to_a_key_is_stored_under_that_key(void **state)
{
    assert_string_equal(key_for("data/f.txt", "key"), "key");
    assert_string_equal(key_for("data/f.txt", "dir/new-name.bin"), "dir/new-name.bin");
}

static void a_file_with_no_key_given_keeps_its_name(void **state)
{
    assert_string_equal(key_for("data/f.txt", NULL), "f.txt");
    assert_string_equal(key_for("f.txt", NULL), "f.txt");
}

static void a_key_copied_to_a_prefix_keeps_its_last_component(void **state)
{
    assert_string_equal(key_for("logs/2024/a.log", "archive/"), "archive/a.log");
}

static void a_recursive_prefix_is_a_folder_or_the_root(void **state)
{
    assert_string_equal(prefix_for("pre"), "pre/");
    assert_string_equal(prefix_for("pre/"), "pre/");
    assert_string_equal(prefix_for("a/b"), "a/b/");
    assert_string_equal(prefix_for(""), "");
    assert_string_equal(prefix_for(NULL), "");
}

static void keys_naming_prefixes_are_empty_or_end_in_a_slash(void **state)
{
    assert_true(s3_key_is_prefix(""));
    assert_true(s3_key_is_prefix("dir/"));
    assert_false(s3_key_is_prefix("dir"));
    assert_false(s3_key_is_prefix("dir/x"));
}

static void names_are_the_last_component_without_trailing_slashes(void **state)
{
    size_t n;
    const char *name = s3_target_name("a/b/c", &n);
    assert_int_equal(n, 1);
    assert_memory_equal(name, "c", 1);
    name = s3_target_name("a/bb//", &n);
    assert_int_equal(n, 2);
    assert_memory_equal(name, "bb", 2);
    name = s3_target_name("plain", &n);
    assert_int_equal(n, 5);
}

static void a_download_into_a_folder_or_a_slash_keeps_the_key_name(void **state)
{
    char dir[] = "/tmp/skyrun-target-XXXXXX", slash[PATH_MAX + 8], file[PATH_MAX + 8];
    assert_non_null(mkdtemp(dir));
    snprintf(slash, sizeof slash, "%s/", dir);
    snprintf(file, sizeof file, "%s/x.bin", dir);
    assert_string_equal(file_for("k/x.bin", dir), file);     /* an existing folder */
    assert_string_equal(file_for("k/x.bin", slash), file);
    /* A folder that does not exist yet, named with a trailing '/'. */
    assert_string_equal(file_for("x.bin", "new/"), "new/x.bin");
    /* Anything else is the file itself. */
    snprintf(file, sizeof file, "%s/other", dir);
    assert_string_equal(file_for("k/x.bin", file), file);
    assert_string_equal(file_for("x.bin", "a/b/c"), "a/b/c");
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_file_to_a_prefix_keeps_its_name),
        cmocka_unit_test(a_file_to_a_key_is_stored_under_that_key),
        cmocka_unit_test(a_file_with_no_key_given_keeps_its_name),
        cmocka_unit_test(a_key_copied_to_a_prefix_keeps_its_last_component),
        cmocka_unit_test(a_recursive_prefix_is_a_folder_or_the_root),
        cmocka_unit_test(keys_naming_prefixes_are_empty_or_end_in_a_slash),
        cmocka_unit_test(names_are_the_last_component_without_trailing_slashes),
        cmocka_unit_test(a_download_into_a_folder_or_a_slash_keeps_the_key_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
