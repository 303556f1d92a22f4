/*
 * test_config: src/util/config.c — skyrun.yaml loads into a tree that
 * answers dotted-path lookups; bad files fail with file:line:col; aliases,
 * alias bombs, deep nesting and multiple documents are refused; the file is
 * found by --config, SKYRUN_CONFIG, ./skyrun.yaml, then
 * ~/.config/skyrun/config.yaml.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/buf.h"
#include "util/config.h"

static const char API_EXAMPLE[] =
    "storage:\n"
    "  lab:\n"
    "    endpoint: http://10.0.0.5:9000\n"
    "    region: us-east-1\n"
    "    path_style: true\n"
    "    credentials: { profile: lab }      # no secrets in this file needed\n"
    "providers:\n"
    "  gpu-boxes:\n"
    "    type: ssh\n"
    "    user: ubuntu\n"
    "    identity: ~/.ssh/id_ed25519\n"
    "    hosts: [ 10.0.0.11, 10.0.0.12:2222 ]\n"
    "empty:\n"
    "tilde: ~\n"
    "quoted_null: \"null\"\n";

static sky_config *load(const char *text, char *err, size_t errlen)
{
    return sky_config_load_string(text, strlen(text), "skyrun.yaml", err, errlen);
}

static void test_paths_reach_maps_sequences_and_scalars(void **state)
{
    char err[256];
    sky_config *cfg = load(API_EXAMPLE, err, sizeof err);
    const sky_config_node *hosts, *lab;
    int b = 0;

    assert_non_null(cfg);
    assert_string_equal(sky_config_string(cfg->root, "storage.lab.endpoint"), "http://10.0.0.5:9000");
    assert_string_equal(sky_config_string(cfg->root, "storage.lab.credentials.profile"), "lab");
    assert_string_equal(sky_config_string(cfg->root, "providers.gpu-boxes.hosts.1"), "10.0.0.12:2222");
    assert_int_equal(sky_config_bool(cfg, cfg->root, "storage.lab.path_style", &b, err, sizeof err), 1);
    assert_int_equal(b, 1);

    hosts = sky_config_get(cfg->root, "providers.gpu-boxes.hosts");
    assert_non_null(hosts);
    assert_int_equal(hosts->kind, SKY_CONFIG_SEQ);
    assert_int_equal(hosts->nchildren, 2);
    lab = sky_config_get(cfg->root, "storage.lab");
    assert_int_equal(lab->kind, SKY_CONFIG_MAP);
    assert_string_equal(lab->children[0]->key, "endpoint");   /* file order kept */
    assert_int_equal(lab->children[0]->line, 3);
    assert_int_equal(lab->children[0]->column, 15);

    assert_null(sky_config_get(cfg->root, "storage.nope"));
    assert_null(sky_config_get(cfg->root, "providers.gpu-boxes.hosts.2"));
    assert_null(sky_config_get(cfg->root, "providers.gpu-boxes.hosts.x"));
    assert_null(sky_config_string(cfg->root, "storage.lab"));   /* a map, not a scalar */
    assert_null(sky_config_string(cfg->root, "empty"));
    assert_null(sky_config_string(cfg->root, "tilde"));
    assert_string_equal(sky_config_string(cfg->root, "quoted_null"), "null");
    assert_ptr_equal(sky_config_get(cfg->root, ""), cfg->root);
    sky_config_free(cfg);
}

static void assert_load_fails(const char *text, const char *expected_error_part)
{
    char err[512] = "";
    sky_config *cfg = load(text, err, sizeof err);
    assert_null(cfg);
    if (!strstr(err, expected_error_part))
        fail_msg("error \"%s\" does not contain \"%s\"", err, expected_error_part);
}

static void test_syntax_error_names_file_line_and_column(void **state)
{
    assert_load_fails("storage:\n  lab:\n    endpoint: [1, 2\n", "skyrun.yaml:4:1: ");
    assert_load_fails("a: b\n c: d\n", "skyrun.yaml:2:");
    assert_load_fails("a: \"unterminated\n", "skyrun.yaml:");
}

static void test_duplicate_keys_are_errors(void **state)
{
    assert_load_fails("storage:\n  lab: 1\n  lab: 2\n", "skyrun.yaml:3:3: duplicate key 'lab'");
}

static void test_aliases_are_refused(void **state)
{
    assert_load_fails("base: &b { region: eu }\nlab: *b\n",
                      "skyrun.yaml:2:6: YAML aliases (*b) are not allowed");
}

static void test_alias_bomb_is_refused_without_expanding_it(void **state)
{
    assert_load_fails("a: &a [x, x, x, x, x, x, x, x, x]\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
                      "YAML aliases (*a) are not allowed");
}

static void test_excessive_nesting_is_refused(void **state)
{
    sky_buf b = SKY_BUF_INIT;
    for (int i = 0; i < SKY_CONFIG_MAX_DEPTH + 10; i++)
        sky_buf_append_byte(&b, '[');
    for (int i = 0; i < SKY_CONFIG_MAX_DEPTH + 10; i++)
        sky_buf_append_byte(&b, ']');
    assert_load_fails(sky_buf_cstr(&b), "nested deeper than 64 levels");
    sky_buf_free(&b);
}

static void test_multiple_documents_are_refused(void **state)
{
    assert_load_fails("a: 1\n---\nb: 2\n", "skyrun.yaml:2:1: more than one YAML document");
}

static void test_map_keys_must_be_scalars(void **state)
{
    assert_load_fails("? [a, b]\n: c\n", "a map key must be a plain value");
}

static void test_bool_accepts_yaml_spellings_and_names_bad_values(void **state)
{
    char err[256];
    sky_config *cfg = load("a: yes\nb: Off\nc: maybe\nd: ~\n", err, sizeof err);
    int v = -1;

    assert_non_null(cfg);
    assert_int_equal(sky_config_bool(cfg, cfg->root, "a", &v, err, sizeof err), 1);
    assert_int_equal(v, 1);
    assert_int_equal(sky_config_bool(cfg, cfg->root, "b", &v, err, sizeof err), 1);
    assert_int_equal(v, 0);
    v = 7;
    assert_int_equal(sky_config_bool(cfg, cfg->root, "d", &v, err, sizeof err), 0);
    assert_int_equal(sky_config_bool(cfg, cfg->root, "zzz", &v, err, sizeof err), 0);
    assert_int_equal(v, 7);
    assert_int_equal(sky_config_bool(cfg, cfg->root, "c", &v, err, sizeof err), -1);
    assert_string_equal(err, "skyrun.yaml:3:4: c must be true or false");
    sky_config_free(cfg);
}

static void test_empty_file_loads_with_no_root(void **state)
{
    char err[64];
    sky_config *cfg = load("# only a comment\n", err, sizeof err);
    assert_non_null(cfg);
    assert_null(cfg->root);
    assert_null(sky_config_string(cfg->root, "storage"));
    sky_config_free(cfg);
}

/* ---- files and the search order ----------------------------------------- */

typedef struct sandbox {
    char dir[PATH_MAX];
    char old_cwd[PATH_MAX];
    char *old_home, *old_config;
} sandbox;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int sandbox_setup(void **state)
{
    sandbox *s = calloc(1, sizeof *s);
    const char *home = getenv("HOME"), *config = getenv("SKYRUN_CONFIG");
    char path[PATH_MAX + 64];

    snprintf(s->dir, sizeof s->dir, "/tmp/skyrun-test-config-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_non_null(getcwd(s->old_cwd, sizeof s->old_cwd));
    s->old_home = home ? strdup(home) : NULL;
    s->old_config = config ? strdup(config) : NULL;
    snprintf(path, sizeof path, "%s/work", s->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chdir(path), 0);
    setenv("HOME", s->dir, 1);
    unsetenv("SKYRUN_CONFIG");
    *state = s;
    return 0;
}

static int sandbox_teardown(void **state)
{
    sandbox *s = *state;
    char cmd[PATH_MAX + 16];

    assert_int_equal(chdir(s->old_cwd), 0);
    if (s->old_home)
        setenv("HOME", s->old_home, 1);
    if (s->old_config)
        setenv("SKYRUN_CONFIG", s->old_config, 1);
    else
        unsetenv("SKYRUN_CONFIG");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    assert_int_equal(system(cmd), 0);
    free(s->old_home);
    free(s->old_config);
    free(s);
    return 0;
}

static void test_config_search_order(void **state)
{
    sandbox *s = *state;
    char found[PATH_MAX], user[PATH_MAX + 64];

    assert_int_equal(sky_config_find(NULL, found, sizeof found), 0);   /* none: optional */

    snprintf(user, sizeof user, "%s/.config", s->dir);
    assert_int_equal(mkdir(user, 0700), 0);
    snprintf(user, sizeof user, "%s/.config/skyrun", s->dir);
    assert_int_equal(mkdir(user, 0700), 0);
    snprintf(user, sizeof user, "%s/.config/skyrun/config.yaml", s->dir);
    write_text(user, "a: 1\n");
    assert_int_equal(sky_config_find(NULL, found, sizeof found), 1);
    assert_string_equal(found, user);

    write_text("skyrun.yaml", "a: 2\n");
    assert_int_equal(sky_config_find(NULL, found, sizeof found), 1);
    assert_string_equal(found, "skyrun.yaml");

    setenv("SKYRUN_CONFIG", "/elsewhere/env.yaml", 1);
    assert_int_equal(sky_config_find(NULL, found, sizeof found), 1);
    assert_string_equal(found, "/elsewhere/env.yaml");

    assert_int_equal(sky_config_find("given.yaml", found, sizeof found), 1);
    assert_string_equal(found, "given.yaml");
}

static void test_missing_file_error_names_the_file(void **state)
{
    char err[512];
    assert_null(sky_config_load_file("does-not-exist.yaml", err, sizeof err));
    assert_string_equal(err, "does-not-exist.yaml: cannot open config file: No such file or directory");
}

static void test_file_errors_name_the_file_path(void **state)
{
    char err[512];
    sky_config *cfg;

    write_text("skyrun.yaml", "storage:\n  lab:\n    path_style: true\n    path_style: false\n");
    assert_null(sky_config_load_file("skyrun.yaml", err, sizeof err));
    assert_string_equal(err, "skyrun.yaml:4:5: duplicate key 'path_style'");

    write_text("skyrun.yaml", "storage: {lab: {region: eu-west-1}}\n");
    cfg = sky_config_load_file("skyrun.yaml", err, sizeof err);
    assert_non_null(cfg);
    assert_string_equal(cfg->source, "skyrun.yaml");
    assert_string_equal(sky_config_string(cfg->root, "storage.lab.region"), "eu-west-1");
    sky_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_reach_maps_sequences_and_scalars),
        cmocka_unit_test(test_syntax_error_names_file_line_and_column),
        cmocka_unit_test(test_duplicate_keys_are_errors),
        cmocka_unit_test(test_aliases_are_refused),
        cmocka_unit_test(test_alias_bomb_is_refused_without_expanding_it),
        cmocka_unit_test(test_excessive_nesting_is_refused),
        cmocka_unit_test(test_multiple_documents_are_refused),
        cmocka_unit_test(test_map_keys_must_be_scalars),
        cmocka_unit_test(test_bool_accepts_yaml_spellings_and_names_bad_values),
        cmocka_unit_test(test_empty_file_loads_with_no_root),
        cmocka_unit_test_setup_teardown(test_config_search_order, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_error_names_the_file, sandbox_setup, sandbox_teardown),
        cmocka_unit_test_setup_teardown(test_file_errors_name_the_file_path, sandbox_setup, sandbox_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
