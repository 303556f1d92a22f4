/* test_s3_sync: the sync planner's decisions (src/s3/sync.c) — what is
 * copied, what is left alone, what --delete removes, how filters and the
 * checksum mode decide. tests/s3/test_sync.sh runs the same rules against a
 * real server and aws-cli. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <unistd.h>

#include "s3/client.h"
#include "s3/sync.h"

#define MD5_A "0cc175b9c0f1b6a831c399e269772661"
#define MD5_B "92eb5ffee6ae2fec3ad71c777531578f"

static s3_sync_listing src, dst;
static s3_sync_plan plan;
static char why[256];

static int setup(void **state)
{
    s3_sync_listing_init(&src, 0);
    s3_sync_listing_init(&dst, 1);
    memset(&plan, 0, sizeof plan);
    why[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    s3_sync_plan_free(&plan);
    s3_sync_listing_free(&src);
    s3_sync_listing_free(&dst);
    return 0;
}

static void make_plan(const s3_sync_options *o)
{
    assert_int_equal(s3_sync_plan_make(&src, &dst, o, &plan, why, sizeof why), 0);
}

/* "copy:path:reason" / "delete:path", one per action, joined by spaces. */
static const char *describe(void)
{
    static char out[2048];
    out[0] = '\0';
    for (size_t i = 0; i < plan.n; i++) {
        const s3_sync_action *a = &plan.actions[i];
        size_t len = strlen(out);
        if (a->kind == S3_SYNC_COPY)
            snprintf(out + len, sizeof out - len, "%scopy:%s:%s", i ? " " : "", a->src->path,
                     s3_sync_reason_name(a->reason));
        else
            snprintf(out + len, sizeof out - len, "%sdelete:%s", i ? " " : "", a->dst->path);
    }
    return out;
}

static void what_is_missing_is_copied_and_equal_entries_are_not(void **state)
{
    s3_sync_listing_add(&src, "b.txt", 10, 100, NULL);
    s3_sync_listing_add(&src, "a.txt", 5, 100, NULL);
    s3_sync_listing_add(&src, "d/c.txt", 7, 100, NULL);
    s3_sync_listing_add(&dst, "a.txt", 5, 200, MD5_A);
    s3_sync_options o = { 0 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:b.txt:missing copy:d/c.txt:missing");
    assert_int_equal(plan.unchanged, 1);
}

static void a_different_size_is_copied_whatever_the_times(void **state)
{
    s3_sync_listing_add(&src, "a", 5, 100, NULL);
    s3_sync_listing_add(&dst, "a", 6, 500, MD5_A);
    s3_sync_options o = { 0 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:a:size differs");
}

static void a_newer_source_is_copied_an_older_or_equal_one_is_not(void **state)
{
    s3_sync_listing_add(&src, "newer", 5, 101, NULL);
    s3_sync_listing_add(&src, "same", 5, 100, NULL);
    s3_sync_listing_add(&src, "older", 5, 99, NULL);
    s3_sync_listing_add(&dst, "newer", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "same", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "older", 5, 100, MD5_A);
    s3_sync_options o = { 0 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:newer:newer");
    assert_int_equal(plan.unchanged, 2);
}

static void the_rules_are_the_same_downloading(void **state)
{
    /* S3 → local: an object newer than the file, or of another size. */
    s3_sync_listing_free(&src);
    s3_sync_listing_free(&dst);
    s3_sync_listing_init(&src, 1);
    s3_sync_listing_init(&dst, 0);
    s3_sync_listing_add(&src, "obj-newer", 5, 200, MD5_A);
    s3_sync_listing_add(&src, "obj-equal", 5, 200, MD5_A);   /* the file got the object's time */
    s3_sync_listing_add(&src, "obj-older", 5, 100, MD5_A);
    s3_sync_listing_add(&src, "obj-size", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "obj-newer", 5, 150, NULL);
    s3_sync_listing_add(&dst, "obj-equal", 5, 200, NULL);
    s3_sync_listing_add(&dst, "obj-older", 5, 150, NULL);
    s3_sync_listing_add(&dst, "obj-size", 4, 150, NULL);
    s3_sync_options o = { 0 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:obj-newer:newer copy:obj-size:size differs");
}

static void a_second_run_after_copying_copies_nothing(void **state)
{
    /* What a sync leaves: uploads are newer than their files, downloads
     * carry the object's time. */
    s3_sync_listing_add(&src, "x", 3, 100, NULL);
    s3_sync_listing_add(&src, "y/z", 4, 100, NULL);
    s3_sync_listing_add(&dst, "x", 3, 130, MD5_A);
    s3_sync_listing_add(&dst, "y/z", 4, 130, MD5_B);
    s3_sync_options o = { .delete_extra = 1 };
    make_plan(&o);
    assert_int_equal(plan.n, 0);
    assert_int_equal(plan.unchanged, 2);
}

static void delete_removes_only_what_the_source_lacks(void **state)
{
    s3_sync_listing_add(&src, "keep", 1, 100, NULL);
    s3_sync_listing_add(&dst, "keep", 1, 100, MD5_A);
    s3_sync_listing_add(&dst, "gone", 1, 100, MD5_A);
    s3_sync_listing_add(&dst, "a/gone-too", 1, 100, MD5_A);
    s3_sync_options o = { 0 };
    make_plan(&o);
    assert_int_equal(plan.n, 0);   /* without --delete, extra entries stay */
    s3_sync_plan_free(&plan);
    o.delete_extra = 1;
    make_plan(&o);
    assert_string_equal(describe(), "delete:a/gone-too delete:gone");
}

static void filters_apply_in_order_and_the_last_match_wins(void **state)
{
    s3_sync_filter f[] = { { 0, "*" }, { 1, "*.txt" }, { 0, "logs/*" } };
    assert_int_equal(s3_sync_included(f, 3, "a.txt"), 1);
    assert_int_equal(s3_sync_included(f, 3, "deep/er/a.txt"), 1);   /* '*' crosses '/' */
    assert_int_equal(s3_sync_included(f, 3, "a.bin"), 0);
    assert_int_equal(s3_sync_included(f, 3, "logs/a.txt"), 0);
    assert_int_equal(s3_sync_included(f, 2, "logs/a.txt"), 1);
    assert_int_equal(s3_sync_included(NULL, 0, "anything"), 1);
    s3_sync_filter g[] = { { 0, ".git/*" }, { 0, "*.tm?" }, { 0, "[ab]*" } };
    assert_int_equal(s3_sync_included(g, 3, ".git/config"), 0);      /* a leading dot is plain */
    assert_int_equal(s3_sync_included(g, 3, "x.tmp"), 0);
    assert_int_equal(s3_sync_included(g, 3, "b/c"), 0);
    assert_int_equal(s3_sync_included(g, 3, "c/b"), 1);
    s3_sync_filter h[] = { { 0, "a\\b" } };                         /* a backslash is no escape */
    assert_int_equal(s3_sync_included(h, 1, "a\\b"), 0);
}

static void excluded_entries_are_neither_copied_nor_deleted(void **state)
{
    s3_sync_listing_add(&src, "a.txt", 1, 100, NULL);
    s3_sync_listing_add(&src, "b.log", 1, 100, NULL);
    s3_sync_listing_add(&dst, "old.log", 1, 100, MD5_A);
    s3_sync_listing_add(&dst, "old.txt", 1, 100, MD5_A);
    s3_sync_filter f[] = { { 0, "*.log" } };
    s3_sync_options o = { .filters = f, .nfilters = 1, .delete_extra = 1 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:a.txt:missing delete:old.txt");
    assert_int_equal(plan.excluded, 1);
}

/* The checksum callback of these tests: content is the first letter of the
 * path, "a" → MD5_A, "b" → MD5_B; "?…" cannot tell; "!…" fails. */
static int fake_content(void *ud, const s3_sync_entry *local, const char *etag, char *w, size_t wl)
{
    (*(int *)ud)++;
    if (local->path[0] == '!') {
        snprintf(w, wl, "cannot read %s", local->path);
        return -2;
    }
    if (local->path[0] == '?')
        return -1;
    return strcmp(etag, local->path[0] == 'a' ? MD5_A : MD5_B) == 0;
}

static void checksum_mode_compares_content_when_sizes_are_equal(void **state)
{
    int calls = 0;
    s3_sync_listing_add(&src, "a-same-but-newer", 5, 500, NULL);
    s3_sync_listing_add(&src, "b-differs-but-older", 5, 50, NULL);
    s3_sync_listing_add(&src, "?-unknown-newer", 5, 500, NULL);
    s3_sync_listing_add(&src, "?-unknown-older", 5, 50, NULL);
    s3_sync_listing_add(&src, "a-other-size", 6, 50, NULL);
    s3_sync_listing_add(&dst, "a-same-but-newer", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "b-differs-but-older", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "?-unknown-newer", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "?-unknown-older", 5, 100, MD5_A);
    s3_sync_listing_add(&dst, "a-other-size", 5, 100, MD5_A);
    s3_sync_options o = { .checksum = 1, .content_same = fake_content, .content_ud = &calls };
    make_plan(&o);
    /* Unknown content falls back to the time rule; sizes are compared first. */
    assert_string_equal(describe(), "copy:?-unknown-newer:newer copy:a-other-size:size differs "
                                    "copy:b-differs-but-older:content differs");
    assert_int_equal(calls, 4);
}

static void checksum_mode_fails_when_a_file_cannot_be_read(void **state)
{
    int calls = 0;
    s3_sync_listing_add(&src, "!broken", 5, 100, NULL);
    s3_sync_listing_add(&dst, "!broken", 5, 100, MD5_A);
    s3_sync_options o = { .checksum = 1, .content_same = fake_content, .content_ud = &calls };
    assert_int_equal(s3_sync_plan_make(&src, &dst, &o, &plan, why, sizeof why), -1);
    assert_string_equal(why, "cannot read !broken");
}

static void checksum_mode_between_buckets_compares_etags(void **state)
{
    s3_sync_listing_free(&src);
    s3_sync_listing_init(&src, 1);
    s3_sync_listing_add(&src, "same", 1, 500, MD5_A);
    s3_sync_listing_add(&src, "differs", 1, 50, MD5_B);
    s3_sync_listing_add(&src, "multipart-newer", 1, 500, MD5_B "-2");
    s3_sync_listing_add(&dst, "same", 1, 100, MD5_A);
    s3_sync_listing_add(&dst, "differs", 1, 100, MD5_A);
    s3_sync_listing_add(&dst, "multipart-newer", 1, 100, MD5_A);
    s3_sync_options o = { .checksum = 1 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:differs:content differs copy:multipart-newer:newer");
}

static void copy_all_copies_every_included_entry(void **state)
{
    s3_sync_listing_add(&src, "a", 1, 100, NULL);
    s3_sync_listing_add(&src, "b", 1, 100, NULL);
    s3_sync_listing_add(&src, "skip.tmp", 1, 100, NULL);
    s3_sync_listing_add(&dst, "a", 1, 900, MD5_A);
    s3_sync_filter f[] = { { 0, "*.tmp" } };
    s3_sync_options o = { .filters = f, .nfilters = 1, .copy_all = 1 };
    make_plan(&o);
    assert_string_equal(describe(), "copy:a:moved copy:b:moved");
}

static void a_path_listed_twice_is_an_error(void **state)
{
    s3_sync_listing_add(&src, "dup", 1, 100, NULL);
    s3_sync_listing_add(&src, "dup", 2, 100, NULL);
    s3_sync_options o = { 0 };
    assert_int_equal(s3_sync_plan_make(&src, &dst, &o, &plan, why, sizeof why), -1);
    assert_non_null(strstr(why, "dup"));
}

static void empty_listings_give_an_empty_plan(void **state)
{
    s3_sync_options o = { .delete_extra = 1 };
    make_plan(&o);
    assert_int_equal(plan.n, 0);
    assert_int_equal(plan.unchanged, 0);
}

/* ---- the checksum test on real files (s3_file_matches_etag) ---- */

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void md5_hex(const unsigned char *data, size_t n, char out[33])
{
    unsigned char d[16];
    unsigned len;
    EVP_Digest(data, n, d, &len, EVP_md5(), NULL);
    hex_of(d, 16, out);
}

/* "md5(md5(part1)…md5(partN))-N" for parts of part bytes, computed here
 * independently of the client's code. */
static void multipart_etag(const unsigned char *data, size_t n, size_t part, char *out)
{
    size_t parts = (n + part - 1) / part;
    unsigned char *digests = malloc(parts * 16);
    unsigned len;
    assert_non_null(digests);
    for (size_t i = 0; i < parts; i++)
        EVP_Digest(data + i * part, i + 1 < parts ? part : n - i * part, digests + 16 * i, &len, EVP_md5(), NULL);
    unsigned char d[16];
    EVP_Digest(digests, parts * 16, d, &len, EVP_md5(), NULL);
    hex_of(d, 16, out);
    sprintf(out + 32, "-%zu", parts);
    free(digests);
}

static void checksums_of_files_match_plain_and_multipart_etags(void **state)
{
    const size_t MiB = 1024 * 1024, n = 11 * MiB + 5;
    char path[] = "/tmp/skyrun-sync-XXXXXX", plain[33], mp5[48], mp8[48], other[48];
    unsigned char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    md5_hex(data, n, plain);
    multipart_etag(data, n, 5 * MiB, mp5);
    multipart_etag(data, n, 8 * MiB, mp8);
    assert_int_equal(s3_file_matches_etag(path, n, plain, 0, why, sizeof why), 1);
    /* The same plain MD5 in capitals still matches; another MD5 does not. */
    for (char *p = plain; *p; p++)
        *p = (char)(*p >= 'a' ? *p - 32 : *p);
    assert_int_equal(s3_file_matches_etag(path, n, plain, 0, why, sizeof why), 1);
    assert_int_equal(s3_file_matches_etag(path, n, MD5_A, 0, why, sizeof why), 0);
    /* Multipart: with the client's part size, or aws-cli's 8 MiB. */
    assert_int_equal(s3_file_matches_etag(path, n, mp5, 5 * MiB, why, sizeof why), 1);
    assert_int_equal(s3_file_matches_etag(path, n, mp8, 5 * MiB, why, sizeof why), 1);
    assert_int_equal(s3_file_matches_etag(path, n, mp8, 0, why, sizeof why), 1);
    /* An unknown part size (5 MiB parts, the client at 8 MiB) cannot tell;
     * neither can a different multipart ETag, nor one that is no MD5. */
    assert_int_equal(s3_file_matches_etag(path, n, mp5, 8 * MiB, why, sizeof why), -1);
    snprintf(other, sizeof other, "%s-2", MD5_B);
    assert_int_equal(s3_file_matches_etag(path, n, other, 0, why, sizeof why), -1);
    assert_int_equal(s3_file_matches_etag(path, n, "not-an-md5", 0, why, sizeof why), -1);
    unlink(path);
    assert_int_equal(s3_file_matches_etag(path, n, MD5_A, 0, why, sizeof why), -2);
    assert_non_null(strstr(why, path));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(what_is_missing_is_copied_and_equal_entries_are_not, setup, teardown),
        cmocka_unit_test_setup_teardown(a_different_size_is_copied_whatever_the_times, setup, teardown),
        cmocka_unit_test_setup_teardown(a_newer_source_is_copied_an_older_or_equal_one_is_not, setup, teardown),
        cmocka_unit_test_setup_teardown(the_rules_are_the_same_downloading, setup, teardown),
        cmocka_unit_test_setup_teardown(a_second_run_after_copying_copies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(delete_removes_only_what_the_source_lacks, setup, teardown),
        cmocka_unit_test_setup_teardown(filters_apply_in_order_and_the_last_match_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(excluded_entries_are_neither_copied_nor_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(checksum_mode_compares_content_when_sizes_are_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(checksum_mode_fails_when_a_file_cannot_be_read, setup, teardown),
        cmocka_unit_test_setup_teardown(checksum_mode_between_buckets_compares_etags, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_all_copies_every_included_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(a_path_listed_twice_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_listings_give_an_empty_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(checksums_of_files_match_plain_and_multipart_etags, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
