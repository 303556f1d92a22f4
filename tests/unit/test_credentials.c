/*
 * test_credentials: src/s3/credentials.c — where an S3 client's endpoint,
 * region, addressing and keys come from. Each test runs with HOME and the
 * working directory in a fresh temporary folder and every AWS_* / SKYRUN_*
 * variable cleared, then writes the real files (~/.aws/credentials,
 * ~/.aws/config, skyrun.yaml) a user would have.
 */
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

#include "s3/credentials.h"
#include "s3/presets.h"
#include "util/log.h"

static const char *const CLEARED[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
    "AWS_CA_BUNDLE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "SKYRUN_CONFIG", NULL
};

typedef struct sandbox {
    char dir[PATH_MAX];
    char old_cwd[PATH_MAX];
    char *old_home;
    s3_settings out;
    char err[512];
} sandbox;

static void write_file(const sandbox *s, const char *relative, const char *text)
{
    char path[PATH_MAX + 256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", s->dir, relative);
    for (char *p = path + strlen(s->dir) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    sandbox *s = calloc(1, sizeof *s);
    const char *home = getenv("HOME");

    assert_non_null(s);
    snprintf(s->dir, sizeof s->dir, "/tmp/skyrun-test-credentials-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    assert_non_null(getcwd(s->old_cwd, sizeof s->old_cwd));
    s->old_home = home ? strdup(home) : NULL;
    assert_int_equal(chdir(s->dir), 0);
    setenv("HOME", s->dir, 1);
    for (int i = 0; CLEARED[i]; i++)
        unsetenv(CLEARED[i]);
    sky_secret_clear();
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    sandbox *s = *state;
    char cmd[PATH_MAX + 16];

    s3_settings_free(&s->out);
    assert_int_equal(chdir(s->old_cwd), 0);
    if (s->old_home)
        setenv("HOME", s->old_home, 1);
    for (int i = 0; CLEARED[i]; i++)
        unsetenv(CLEARED[i]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    assert_int_equal(system(cmd), 0);
    sky_secret_clear();
    free(s->old_home);
    free(s);
    return 0;
}

static int resolve(sandbox *s, const s3_settings *given, const char *preset, const char *profile)
{
    s3_settings_free(&s->out);
    return s3_settings_resolve(given, preset, profile, &s->out, s->err, sizeof s->err);
}

static void resolve_ok(sandbox *s, const s3_settings *given, const char *preset, const char *profile)
{
    if (resolve(s, given, preset, profile) != 0)
        fail_msg("s3_settings_resolve failed: %s", s->err);
}

static void use_environment_keys(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret-from-environment", 1);
}

static const char AWS_FILES_CREDENTIALS[] =
    "[default]\n"
    "aws_access_key_id = AKIDDEFAULT\n"
    "aws_secret_access_key = secret-default-profile\n"
    "\n"
    "# a comment\n"
    "[lab]\n"
    "aws_access_key_id=AKIDLAB\n"
    "aws_secret_access_key=secret-lab-profile\n"
    "aws_session_token = token-lab-profile\n";

static const char AWS_FILES_CONFIG[] =
    "[default]\n"
    "region = eu-west-1\n"
    "[profile lab]\n"
    "region = us-west-2\n"
    "s3 =\n"
    "  addressing_style = path\n"
    "  endpoint_url = http://127.0.0.1:4568\n";

/* ---- order of sources --------------------------------------------------- */

static void test_explicit_values_win_over_environment_and_files(void **state)
{
    sandbox *s = *state;
    s3_settings given = { 0 };

    use_environment_keys();
    setenv("AWS_REGION", "ap-south-1", 1);
    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    given.access_key = "AKIDEXPLICIT";
    given.secret_key = "secret-explicit";
    given.endpoint = "http://127.0.0.1:4568/";
    given.region = "us-east-2";

    resolve_ok(s, &given, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDEXPLICIT");
    assert_string_equal(s->out.secret_key, "secret-explicit");
    assert_null(s->out.session_token);
    assert_string_equal(s->out.credential_source, "explicit");
    assert_string_equal(s->out.endpoint, "http://127.0.0.1:4568");   /* trailing '/' dropped */
    assert_string_equal(s->out.region, "us-east-2");
    assert_int_equal(s->out.path_style, 1);    /* custom endpoint, no preset: path-style */
    assert_int_equal(s->out.verify_tls, 1);    /* a zeroed `given` never turns TLS checks off */
}

static void test_environment_keys_region_and_endpoint(void **state)
{
    sandbox *s = *state;

    use_environment_keys();
    setenv("AWS_SESSION_TOKEN", "token-from-environment", 1);
    setenv("AWS_DEFAULT_REGION", "eu-central-1", 1);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111", 1);
    setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2222", 1);
    setenv("AWS_CA_BUNDLE", "/etc/ssl/lab-ca.pem", 1);
    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);

    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDENV");
    assert_string_equal(s->out.session_token, "token-from-environment");
    assert_string_equal(s->out.credential_source, "environment");
    assert_string_equal(s->out.region, "eu-central-1");
    assert_string_equal(s->out.endpoint, "http://127.0.0.1:2222");   /* _S3 is more specific */
    assert_string_equal(s->out.ca_bundle, "/etc/ssl/lab-ca.pem");

    setenv("AWS_REGION", "eu-north-1", 1);   /* AWS_REGION beats AWS_DEFAULT_REGION */
    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.region, "eu-north-1");
}

static void test_default_profile_of_the_aws_files_without_environment(void **state)
{
    sandbox *s = *state;

    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    write_file(s, ".aws/config", AWS_FILES_CONFIG);
    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDDEFAULT");
    assert_string_equal(s->out.credential_source, "aws-credentials-file:default");
    assert_string_equal(s->out.region, "eu-west-1");
    assert_string_equal(s->out.endpoint, "https://s3.eu-west-1.amazonaws.com");
    assert_int_equal(s->out.path_style, 0);    /* AWS: virtual-hosted */
    assert_null(s->out.profile);
}

static void test_named_profile_reads_both_aws_files_and_beats_environment_keys(void **state)
{
    sandbox *s = *state;

    use_environment_keys();
    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    write_file(s, ".aws/config", AWS_FILES_CONFIG);
    resolve_ok(s, NULL, NULL, "lab");
    assert_string_equal(s->out.access_key, "AKIDLAB");
    assert_string_equal(s->out.session_token, "token-lab-profile");
    assert_string_equal(s->out.credential_source, "aws-credentials-file:lab");
    assert_string_equal(s->out.profile, "lab");
    assert_string_equal(s->out.region, "us-west-2");
    assert_string_equal(s->out.endpoint, "http://127.0.0.1:4568");
    assert_int_equal(s->out.path_style, 1);
}

static void test_aws_profile_variable_selects_profile_but_environment_keys_still_win(void **state)
{
    sandbox *s = *state;

    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    write_file(s, ".aws/config", AWS_FILES_CONFIG);
    setenv("AWS_PROFILE", "lab", 1);
    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDLAB");
    assert_string_equal(s->out.profile, "lab");

    use_environment_keys();   /* as the AWS CLI does: keys in the environment come first */
    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDENV");
    assert_string_equal(s->out.region, "us-west-2");
}

static void test_shared_file_locations_come_from_the_environment(void **state)
{
    sandbox *s = *state;
    char creds[PATH_MAX + 32], config[PATH_MAX + 32];

    write_file(s, "elsewhere/creds", "[default]\naws_access_key_id = AKIDMOVED\n"
                                     "aws_secret_access_key = secret-moved\n");
    write_file(s, "elsewhere/config", "[default]\nregion = sa-east-1\n");
    snprintf(creds, sizeof creds, "%s/elsewhere/creds", s->dir);
    snprintf(config, sizeof config, "%s/elsewhere/config", s->dir);
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
    setenv("AWS_CONFIG_FILE", config, 1);
    resolve_ok(s, NULL, NULL, NULL);
    assert_string_equal(s->out.access_key, "AKIDMOVED");
    assert_string_equal(s->out.region, "sa-east-1");
}

static void test_keys_in_the_aws_config_file_are_found_too(void **state)
{
    sandbox *s = *state;

    write_file(s, ".aws/config", "[profile ci]\naws_access_key_id = AKIDCI\n"
                                 "aws_secret_access_key = secret-ci\nregion = us-west-1\n");
    resolve_ok(s, NULL, NULL, "ci");
    assert_string_equal(s->out.access_key, "AKIDCI");
    assert_string_equal(s->out.credential_source, "aws-config-file:ci");
}

/* ---- skyrun.yaml -------------------------------------------------------- */

static void test_skyrun_yaml_profile_as_in_the_api_example(void **state)
{
    sandbox *s = *state;

    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    write_file(s, "skyrun.yaml",
               "storage:\n"
               "  minio-lab:\n"
               "    endpoint: http://10.0.0.5:9000\n"
               "    region: us-east-1\n"
               "    path_style: true\n"
               "    credentials: { profile: lab }\n");
    resolve_ok(s, NULL, NULL, "minio-lab");
    assert_string_equal(s->out.endpoint, "http://10.0.0.5:9000");
    assert_int_equal(s->out.path_style, 1);
    assert_string_equal(s->out.access_key, "AKIDLAB");
    assert_string_equal(s->out.credential_source, "aws-credentials-file:lab");
    assert_string_equal(s->out.profile, "minio-lab");
    assert_string_equal(s->out.config_file, "skyrun.yaml");
}

static void test_skyrun_yaml_inline_keys_and_settings(void **state)
{
    sandbox *s = *state;

    write_file(s, "skyrun.yaml",
               "storage:\n"
               "  r2:\n"
               "    preset: r2\n"
               "    account_id: 0123abcd\n"
               "    verify_tls: false\n"
               "    credentials:\n"
               "      access_key: AKIDYAML\n"
               "      secret_key: secret-from-yaml-file\n");
    resolve_ok(s, NULL, NULL, "r2");
    assert_string_equal(s->out.credential_source, "skyrun.yaml:r2");
    assert_string_equal(s->out.secret_key, "secret-from-yaml-file");
    assert_string_equal(s->out.endpoint, "https://0123abcd.r2.cloudflarestorage.com");
    assert_string_equal(s->out.region, "auto");
    assert_int_equal(s->out.verify_tls, 0);
    assert_string_equal(s->out.account_id, "0123abcd");
}

static void test_config_file_given_or_from_skyrun_config_is_used(void **state)
{
    sandbox *s = *state;
    s3_settings given = { 0 };

    write_file(s, "skyrun.yaml", "storage: { p: { region: from-cwd, access_key: A1, secret_key: S111 } }\n");
    write_file(s, "other.yaml", "storage: { p: { region: from-other, access_key: A2, secret_key: S222 } }\n");
    write_file(s, "env.yaml", "storage: { p: { region: from-env, access_key: A3, secret_key: S333 } }\n");
    resolve_ok(s, NULL, NULL, "p");
    assert_string_equal(s->out.region, "from-cwd");
    setenv("SKYRUN_CONFIG", "env.yaml", 1);
    resolve_ok(s, NULL, NULL, "p");
    assert_string_equal(s->out.region, "from-env");
    given.config_file = "other.yaml";
    resolve_ok(s, &given, NULL, "p");
    assert_string_equal(s->out.region, "from-other");
    assert_string_equal(s->out.config_file, "other.yaml");
}

static void test_broken_skyrun_yaml_is_reported_with_its_position(void **state)
{
    sandbox *s = *state;

    write_file(s, "skyrun.yaml", "storage:\n  lab:\n    path_style: maybe\n");
    use_environment_keys();
    assert_int_equal(resolve(s, NULL, NULL, "lab"), -1);
    assert_string_equal(s->err, "skyrun.yaml:3:17: path_style must be true or false");

    write_file(s, "skyrun.yaml", "storage: [\n");
    assert_int_equal(resolve(s, NULL, NULL, NULL), -1);
    assert_non_null(strstr(s->err, "skyrun.yaml:2:1: "));
}

/* ---- errors ------------------------------------------------------------- */

static void test_missing_profile_is_an_error_naming_where_it_looked(void **state)
{
    sandbox *s = *state;
    char expected[PATH_MAX * 2 + 128];

    use_environment_keys();
    assert_int_equal(resolve(s, NULL, NULL, "lab"), -1);
    snprintf(expected, sizeof expected,
             "profile 'lab' not found in %s/.aws/credentials, %s/.aws/config or "
             "skyrun.yaml (none found)", s->dir, s->dir);
    assert_string_equal(s->err, expected);
}

static void test_no_credentials_anywhere_is_an_error(void **state)
{
    sandbox *s = *state;
    assert_int_equal(resolve(s, NULL, NULL, NULL), -1);
    assert_string_equal(s->err, "no credentials found for storage: set access_key/secret_key, "
                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a profile in "
                                "~/.aws/credentials");
    assert_null(s->out.endpoint);   /* out is left empty and safe to free */
}

static void test_half_a_key_pair_is_an_error_not_a_mix_of_sources(void **state)
{
    sandbox *s = *state;

    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    assert_int_equal(resolve(s, NULL, NULL, NULL), -1);
    assert_string_equal(s->err, "incomplete storage credentials from environment: "
                                "AWS_SECRET_ACCESS_KEY is missing");
}

static void test_endpoint_without_scheme_is_refused(void **state)
{
    sandbox *s = *state;
    s3_settings given = { 0 };

    use_environment_keys();
    given.endpoint = "127.0.0.1:9000";
    assert_int_equal(resolve(s, &given, NULL, NULL), -1);
    assert_string_equal(s->err, "storage endpoint '127.0.0.1:9000' must start with http:// or https://");
}

/* ---- presets ------------------------------------------------------------ */

static void assert_preset(sandbox *s, const char *preset, const char *region, const char *endpoint,
                          const char *expected_region, int path_style)
{
    s3_settings given = { 0 };
    given.region = (char *)region;
    resolve_ok(s, &given, preset, NULL);
    assert_string_equal(s->out.endpoint, endpoint);
    assert_string_equal(s->out.region, expected_region);
    assert_int_equal(s->out.path_style, path_style);
}

static void test_presets_give_endpoint_region_and_addressing(void **state)
{
    sandbox *s = *state;

    use_environment_keys();
    assert_preset(s, "aws", NULL, "https://s3.us-east-1.amazonaws.com", "us-east-1", 0);
    assert_preset(s, "aws", "eu-west-3", "https://s3.eu-west-3.amazonaws.com", "eu-west-3", 0);
    assert_preset(s, "gcs", NULL, "https://storage.googleapis.com", "auto", 1);
    assert_preset(s, "wasabi", "eu-central-1", "https://s3.eu-central-1.wasabisys.com", "eu-central-1", 1);
    assert_preset(s, "backblaze", "us-west-004", "https://s3.us-west-004.backblazeb2.com", "us-west-004", 1);
    assert_preset(s, "minio", NULL, "http://127.0.0.1:9000", "us-east-1", 1);

    /* An explicit addressing choice beats the preset's. */
    s3_settings given = { 0 };
    given.path_style = 1;
    given.path_style_set = 1;
    resolve_ok(s, &given, "aws", NULL);
    assert_int_equal(s->out.path_style, 1);
}

static void test_presets_that_need_more_say_what(void **state)
{
    sandbox *s = *state;

    use_environment_keys();
    assert_int_equal(resolve(s, NULL, "r2", NULL), -1);
    assert_string_equal(s->err, "storage preset 'r2' needs account_id: set account_id to the "
                                "Cloudflare account id shown on the R2 overview page");
    assert_int_equal(resolve(s, NULL, "backblaze", NULL), -1);
    assert_non_null(strstr(s->err, "storage preset 'backblaze' needs a region"));
    assert_int_equal(resolve(s, NULL, "hyperstack", NULL), -1);
    assert_non_null(strstr(s->err, "storage preset 'hyperstack' needs an endpoint"));
    assert_int_equal(resolve(s, NULL, "dropbox", NULL), -1);
    assert_string_equal(s->err, "unknown storage preset 'dropbox' (known: aws, r2, gcs, wasabi, "
                                "backblaze, minio, hyperstack)");

    s3_settings given = { 0 };
    given.endpoint = "https://objects.example.net";
    resolve_ok(s, &given, "hyperstack", NULL);
    assert_int_equal(s->out.path_style, 1);
}

/* ---- secrets ------------------------------------------------------------ */

static void test_resolved_secrets_are_registered_for_redaction(void **state)
{
    sandbox *s = *state;
    char line[256];

    write_file(s, ".aws/credentials", AWS_FILES_CREDENTIALS);
    resolve_ok(s, NULL, NULL, "lab");
    snprintf(line, sizeof line, "key=%s token=%s id=%s", s->out.secret_key,
             s->out.session_token, s->out.access_key);
    assert_string_equal(sky_redact(line), "key=[REDACTED] token=[REDACTED] id=AKIDLAB");
}

static void test_free_wipes_and_empties_the_settings(void **state)
{
    sandbox *s = *state;

    use_environment_keys();
    resolve_ok(s, NULL, NULL, NULL);
    s3_settings_free(&s->out);
    assert_null(s->out.secret_key);
    assert_null(s->out.endpoint);
    assert_string_equal(s->out.credential_source, "");
    s3_settings_free(&s->out);   /* twice is harmless */
}

static void test_a_copy_is_deep_and_outlives_the_original(void **state)
{
    sandbox *s = *state;
    s3_settings copy;

    use_environment_keys();
    resolve_ok(s, NULL, NULL, NULL);
    s3_settings_copy(&copy, &s->out);
    assert_ptr_not_equal(copy.secret_key, s->out.secret_key);
    s3_settings_free(&s->out);
    assert_string_equal(copy.secret_key, "secret-from-environment");
    assert_string_equal(copy.region, "us-east-1");
    assert_string_equal(copy.credential_source, "environment");
    assert_null(copy.ca_bundle);
    s3_settings_free(&copy);
}

static void test_preset_names_come_from_the_one_table(void **state)
{
    char names[128];
    s3_preset_names("|", names, sizeof names);
    assert_string_equal(names, "aws|r2|gcs|wasabi|backblaze|minio|hyperstack");
    for (size_t i = 0; s3_preset_at(i); i++)
        assert_ptr_equal(s3_preset_find(s3_preset_at(i)->name), s3_preset_at(i));
    assert_ptr_equal(s3_preset_find("MinIO"), s3_preset_find("minio"));
    assert_null(s3_preset_find("dropbox"));
    s3_preset_names(", ", names, 8);   /* truncated, still terminated */
    assert_string_equal(names, "aws, r2");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_explicit_values_win_over_environment_and_files),
        T(test_environment_keys_region_and_endpoint),
        T(test_default_profile_of_the_aws_files_without_environment),
        T(test_named_profile_reads_both_aws_files_and_beats_environment_keys),
        T(test_aws_profile_variable_selects_profile_but_environment_keys_still_win),
        T(test_shared_file_locations_come_from_the_environment),
        T(test_keys_in_the_aws_config_file_are_found_too),
        T(test_skyrun_yaml_profile_as_in_the_api_example),
        T(test_skyrun_yaml_inline_keys_and_settings),
        T(test_config_file_given_or_from_skyrun_config_is_used),
        T(test_broken_skyrun_yaml_is_reported_with_its_position),
        T(test_missing_profile_is_an_error_naming_where_it_looked),
        T(test_no_credentials_anywhere_is_an_error),
        T(test_half_a_key_pair_is_an_error_not_a_mix_of_sources),
        T(test_endpoint_without_scheme_is_refused),
        T(test_presets_give_endpoint_region_and_addressing),
        T(test_presets_that_need_more_say_what),
        T(test_resolved_secrets_are_registered_for_redaction),
        T(test_free_wipes_and_empties_the_settings),
        T(test_a_copy_is_deep_and_outlives_the_original),
        T(test_preset_names_come_from_the_one_table),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
