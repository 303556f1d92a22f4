/* test_s3_url: s3:// URLs, endpoints and request paths (path-style and
 * virtual-hosted), and the multipart planning and ETag arithmetic that
 * transfers rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "s3/client.h"
#include "s3/multipart.h"
#include "s3/s3_url.h"

static void s3_urls_split_into_bucket_and_key(void **state)
{
    char *b, *k, err[128];
    assert_int_equal(s3_url_parse("s3://datasets/iris/x.csv", &b, &k, err, sizeof err), 0);
    assert_string_equal(b, "datasets");
    assert_string_equal(k, "iris/x.csv");
    free(b), free(k);
    assert_int_equal(s3_url_parse("s3://datasets", &b, &k, err, sizeof err), 0);
    assert_string_equal(b, "datasets");
    assert_string_equal(k, "");
    free(b), free(k);
    assert_int_equal(s3_url_parse("s3://b/dir/", &b, &k, err, sizeof err), 0);
    assert_string_equal(k, "dir/");
    free(b), free(k);
}

static void bad_s3_urls_are_refused_with_the_reason(void **state)
{
    char *b, *k, err[128];
    assert_int_equal(s3_url_parse("http://b/k", &b, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an s3:// URL"));
    assert_int_equal(s3_url_parse("s3:///key", &b, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "no bucket"));
    assert_null(b);
}

static void endpoints_parse_scheme_host_port_and_base_path(void **state)
{
    s3_endpoint ep;
    char err[128];
    assert_int_equal(s3_endpoint_parse("http://127.0.0.1:4568", &ep, err, sizeof err), 0);
    assert_string_equal(ep.scheme, "http");
    assert_string_equal(ep.host, "127.0.0.1:4568");
    assert_string_equal(ep.base_path, "");
    assert_int_equal(s3_endpoint_parse("s3.example.com/base/", &ep, err, sizeof err), 0);
    assert_string_equal(ep.scheme, "https");
    assert_string_equal(ep.base_path, "/base");
    assert_int_equal(s3_endpoint_parse("ftp://x", &ep, err, sizeof err), -1);
    assert_int_equal(s3_endpoint_parse("http://bad host", &ep, err, sizeof err), -1);
    assert_int_equal(s3_endpoint_parse("", &ep, err, sizeof err), -1);
}

static void path_style_puts_the_bucket_in_the_path_and_encodes_the_key(void **state)
{
    s3_endpoint ep;
    char err[128];
    sky_buf host = SKY_BUF_INIT, path = SKY_BUF_INIT;
    s3_endpoint_parse("http://127.0.0.1:9000", &ep, err, sizeof err);
    s3_url_host_and_path(&ep, 1, "bkt", "a dir/x+y=1.txt", &host, &path);
    assert_string_equal(sky_buf_cstr(&host), "127.0.0.1:9000");
    assert_string_equal(sky_buf_cstr(&path), "/bkt/a%20dir/x%2By%3D1.txt");
    sky_buf_free(&host), sky_buf_free(&path);
    s3_url_host_and_path(&ep, 1, "bkt", NULL, &host, &path);
    assert_string_equal(sky_buf_cstr(&path), "/bkt");
    sky_buf_free(&host), sky_buf_free(&path);
}

static void virtual_hosted_style_puts_the_bucket_in_the_host(void **state)
{
    s3_endpoint ep;
    char err[128];
    sky_buf host = SKY_BUF_INIT, path = SKY_BUF_INIT;
    s3_endpoint_parse("https://s3.us-east-1.amazonaws.com", &ep, err, sizeof err);
    s3_url_host_and_path(&ep, 0, "bkt", "k/ü", &host, &path);
    assert_string_equal(sky_buf_cstr(&host), "bkt.s3.us-east-1.amazonaws.com");
    assert_string_equal(sky_buf_cstr(&path), "/k/%C3%BC");
    sky_buf_free(&host), sky_buf_free(&path);
}

static void part_size_grows_so_no_upload_exceeds_ten_thousand_parts(void **state)
{
    const uint64_t mib = 1 << 20;
    assert_int_equal(s3_multipart_part_size(100 * mib, 8 * mib), 8 * mib);
    assert_int_equal(s3_multipart_part_size(100 * mib, 1 * mib), 5 * mib);   /* S3's minimum */
    uint64_t big = (uint64_t)200 << 30;                                      /* 200 GiB */
    uint64_t ps = s3_multipart_part_size(big, 8 * mib);
    assert_true(s3_multipart_part_count(big, ps) <= S3_MAX_PARTS);
    assert_int_equal(ps % mib, 0);
    uint64_t edge = (uint64_t)S3_MAX_PARTS * 8 * mib;                      /* exactly 10,000 parts */
    assert_int_equal(s3_multipart_part_count(edge, s3_multipart_part_size(edge, 8 * mib)), 10000);
    assert_true(s3_multipart_part_count(edge + 1, s3_multipart_part_size(edge + 1, 8 * mib)) <= S3_MAX_PARTS);
}

static void part_count_rounds_up_and_empty_files_are_one_part(void **state)
{
    assert_int_equal(s3_multipart_part_count(10, 5), 2);
    assert_int_equal(s3_multipart_part_count(11, 5), 3);
    assert_int_equal(s3_multipart_part_count(0, 5), 1);
}

static void multipart_etag_is_the_md5_of_the_part_md5s_with_the_count(void **state)
{
    /* Two parts whose MD5s are all zero bytes and all 0x01 bytes. */
    unsigned char md5s[2][16];
    memset(md5s[0], 0, 16);
    memset(md5s[1], 1, 16);
    char etag[64];
    s3_multipart_etag((const unsigned char (*)[16])md5s, 2, etag);
    /* md5 of 16 zero bytes followed by 16 0x01 bytes, computed with md5sum. */
    assert_string_equal(etag, "85b46fc8ef95905564f879f9121a3025-2");
    uint64_t n;
    assert_true(s3_etag_multipart_parts(etag, &n));
    assert_int_equal(n, 2);
    assert_false(s3_etag_multipart_parts("d41d8cd98f00b204e9800998ecf8427e", &n));
    assert_false(s3_etag_multipart_parts("d41d8cd98f00b204e9800998ecf8427e-", &n));
    assert_false(s3_etag_multipart_parts("d41d8cd98f00b204e9800998ecf8427e-0", &n));
    assert_false(s3_etag_multipart_parts("xyz-3", &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(s3_urls_split_into_bucket_and_key),
        cmocka_unit_test(bad_s3_urls_are_refused_with_the_reason),
        cmocka_unit_test(endpoints_parse_scheme_host_port_and_base_path),
        cmocka_unit_test(path_style_puts_the_bucket_in_the_path_and_encodes_the_key),
        cmocka_unit_test(virtual_hosted_style_puts_the_bucket_in_the_host),
        cmocka_unit_test(part_size_grows_so_no_upload_exceeds_ten_thousand_parts),
        cmocka_unit_test(part_count_rounds_up_and_empty_files_are_one_part),
        cmocka_unit_test(multipart_etag_is_the_md5_of_the_part_md5s_with_the_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
