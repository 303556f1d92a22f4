/*
 * test_ssh_config: what ~/.ssh/config says about a host, by OpenSSH's
 * rules (src/compute/providers/ssh_config.c): Host patterns and negation,
 * the first value wins, IdentityFile accumulates, Key=value and quotes,
 * Match blocks skipped, junk ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "compute/providers/ssh_config.h"

static const char CONFIG[] =
    "# a comment\n"
    "Host gpu-* !gpu-9\n"
    "    HostName 10.0.0.7\n"
    "    Port=2222\n"
    "    IdentityFile \"~/.ssh/id pool\"\n"
    "Host *\n"
    "    User ana\n"
    "    HostName ignored.example\n"
    "    Port 22\n"
    "    IdentityFile ~/.ssh/id_ed25519\n"
    "Match host gpu-1\n"
    "    User nobody\n";

static void test_patterns_first_value_and_identities(void **state)
{
    (void)state;
    ssh_host_config c;
    ssh_config_parse(CONFIG, sizeof CONFIG - 1, "gpu-1", &c);
    assert_string_equal(c.hostname, "10.0.0.7");
    assert_int_equal(c.port, 2222);
    assert_string_equal(c.user, "ana");
    assert_int_equal(c.nidentities, 2);
    assert_string_equal(c.identities[0], "~/.ssh/id pool");
    assert_string_equal(c.identities[1], "~/.ssh/id_ed25519");
    ssh_host_config_free(&c);
}

static void test_negated_pattern_excludes(void **state)
{
    (void)state;
    ssh_host_config c;
    ssh_config_parse(CONFIG, sizeof CONFIG - 1, "gpu-9", &c);
    assert_string_equal(c.hostname, "ignored.example");
    assert_int_equal(c.port, 22);
    assert_int_equal(c.nidentities, 1);
    ssh_host_config_free(&c);
}

static void test_junk_is_ignored(void **state)
{
    (void)state;
    static const char junk[] = "Port 99999\nPort abc\nHostName\n\"unterminated\n=\n\tUser\t\"b o b\"\n";
    ssh_host_config c;
    ssh_config_parse(junk, sizeof junk - 1, "x", &c);
    assert_int_equal(c.port, 0);
    assert_null(c.hostname);
    assert_string_equal(c.user, "b o b");
    ssh_host_config_free(&c);
}

static void test_missing_file_is_empty(void **state)
{
    (void)state;
    ssh_host_config c;
    char err[200] = "";
    assert_int_equal(ssh_config_load("/nonexistent/skyrun/ssh_config", "h", &c, err, sizeof err), 0);
    assert_null(c.hostname);
    assert_int_equal(c.nidentities, 0);
    ssh_host_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns_first_value_and_identities),
        cmocka_unit_test(test_negated_pattern_excludes),
        cmocka_unit_test(test_junk_is_ignored),
        cmocka_unit_test(test_missing_file_is_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
