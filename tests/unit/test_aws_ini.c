/* test_aws_ini: the parser of ~/.aws/credentials and ~/.aws/config
 * (src/s3/aws_ini.c), on the shapes those files take in the wild. It is
 * fuzzed too (tests/fuzz/fuzz_aws_ini.c); these pin what it means. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3/aws_ini.h"

static void parse(aws_ini *f, const char *text) { aws_ini_parse(f, text, strlen(text)); }

static void sections_hold_trimmed_key_value_pairs(void **state)
{
    aws_ini f;
    parse(&f, "[default]\naws_access_key_id = AKIA1\n  aws_secret_access_key=s3cr3t  \n"
              "[lab]\r\naws_access_key_id = AKIA2\r\n");
    assert_string_equal(aws_ini_get(&f, "default", "", "aws_access_key_id"), "AKIA1");
    assert_string_equal(aws_ini_get(&f, "default", "", "aws_secret_access_key"), "s3cr3t");
    assert_string_equal(aws_ini_get(&f, "lab", "", "aws_access_key_id"), "AKIA2");   /* CRLF */
    assert_null(aws_ini_get(&f, "lab", "", "aws_secret_access_key"));
    assert_true(aws_ini_has_section(&f, "lab"));
    assert_false(aws_ini_has_section(&f, "other"));
    aws_ini_free(&f);
}

static void keys_are_case_insensitive_and_values_kept_as_written(void **state)
{
    aws_ini f;
    parse(&f, "[profile x]\nRegion = eu-west-3\nendpoint_url = http://h:9000/a=b\n");
    assert_string_equal(aws_ini_get(&f, "profile x", "", "region"), "eu-west-3");
    assert_string_equal(aws_ini_get(&f, "profile x", "", "endpoint_url"), "http://h:9000/a=b");
    aws_ini_free(&f);
}

static void a_nested_block_holds_the_indented_lines_after_it(void **state)
{
    aws_ini f;
    parse(&f, "[profile lab]\nregion = us-east-1\ns3 =\n  addressing_style = path\n"
              "  endpoint_url = http://10.0.0.5:9000\nca_bundle = /ca.pem\n");
    assert_string_equal(aws_ini_get(&f, "profile lab", "s3", "addressing_style"), "path");
    assert_string_equal(aws_ini_get(&f, "profile lab", "s3", "endpoint_url"), "http://10.0.0.5:9000");
    assert_null(aws_ini_get(&f, "profile lab", "", "addressing_style"));
    /* An unindented line ends the block. */
    assert_string_equal(aws_ini_get(&f, "profile lab", "", "ca_bundle"), "/ca.pem");
    assert_null(aws_ini_get(&f, "profile lab", "s3", "ca_bundle"));
    aws_ini_free(&f);
}

static void comments_blank_lines_and_junk_are_skipped(void **state)
{
    aws_ini f;
    parse(&f, "# a comment\n; another\n\n[default]\nno equals sign here\n[unterminated\n"
              "region = x\n=\nempty =\n");
    /* "[unterminated" is no section header: the line is skipped, and
     * region still belongs to [default]. */
    assert_string_equal(aws_ini_get(&f, "default", "", "region"), "x");
    assert_null(aws_ini_get(&f, "default", "", "empty"));
    assert_false(aws_ini_has_section(&f, "unterminated"));
    aws_ini_free(&f);
}

static void empty_values_read_as_absent(void **state)
{
    aws_ini f;
    parse(&f, "[default]\n  aws_session_token =\n");
    assert_null(aws_ini_get(&f, "default", "", "aws_session_token"));
    aws_ini_free(&f);
}

static void a_missing_file_is_empty_not_an_error(void **state)
{
    aws_ini f;
    aws_ini_load(&f, "/nonexistent/skyrun/credentials");
    assert_false(f.exists);
    assert_int_equal(f.n, 0);
    assert_string_equal(f.path, "/nonexistent/skyrun/credentials");
    aws_ini_free(&f);
}

static void a_file_is_read_like_the_same_text(void **state)
{
    char path[] = "/tmp/skyrun-ini-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[default]\naws_access_key_id = AKIA9\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    aws_ini f;
    aws_ini_load(&f, path);
    assert_true(f.exists);
    assert_string_equal(aws_ini_get(&f, "default", "", "aws_access_key_id"), "AKIA9");
    aws_ini_free(&f);
    unlink(path);
}

static void long_section_names_are_kept_whole(void **state)
{
    char text[1200], name[1001];
    memset(name, 'p', 1000);
    name[1000] = '\0';
    snprintf(text, sizeof text, "[%s]\nk = v\n", name);
    aws_ini f;
    parse(&f, text);
    assert_string_equal(aws_ini_get(&f, name, "", "k"), "v");
    name[999] = '\0';   /* a shorter name is another section */
    assert_false(aws_ini_has_section(&f, name));
    aws_ini_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sections_hold_trimmed_key_value_pairs),
        cmocka_unit_test(keys_are_case_insensitive_and_values_kept_as_written),
        cmocka_unit_test(a_nested_block_holds_the_indented_lines_after_it),
        cmocka_unit_test(comments_blank_lines_and_junk_are_skipped),
        cmocka_unit_test(empty_values_read_as_absent),
        cmocka_unit_test(a_missing_file_is_empty_not_an_error),
        cmocka_unit_test(a_file_is_read_like_the_same_text),
        cmocka_unit_test(long_section_names_are_kept_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
