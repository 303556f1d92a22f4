/*
 * test_accelerators: GPU requests ("L4", "H100:8"), which of a node's GPUs
 * they take, and each worker's slice (src/compute/accelerators.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "compute/accelerators.h"

static void requests_parse_type_and_count(void **state)
{
    (void)state;
    sky_accel_request r;
    char err[200];
    assert_int_equal(sky_accel_parse("L4", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "L4");
    assert_int_equal(r.count, 0);
    assert_int_equal(sky_accel_parse("H100:8", &r, err, sizeof err), 0);
    assert_string_equal(r.type, "H100");
    assert_int_equal(r.count, 8);
    const char *bad[] = { "", ":2", "H100:", "H100:0", "H100:x", "H100:65", "H 100", NULL };
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(sky_accel_parse(bad[i], &r, err, sizeof err), -1);
        assert_non_null(strstr(err, "accelerator"));
    }
}

static void models_match_by_word_not_by_prefix(void **state)
{
    (void)state;
    sky_gpu g[4];
    int n = sky_accel_parse_gpus("0000:01:00.0\tNVIDIA L4\n0000:02:00.0\tNVIDIA L40S\n"
                                 "0000:03:00.0\tNVIDIA A100-SXM4-80GB\n0000:04:00.0\tnvidia l4\n", g, 4);
    assert_int_equal(n, 4);
    assert_string_equal(g[2].model, "NVIDIA A100-SXM4-80GB");
    int chosen[4];
    sky_accel_request r = { .type = "L4" };
    assert_int_equal(sky_accel_choose(&r, g, n, chosen), 2);
    assert_int_equal(chosen[0], 0);
    assert_int_equal(chosen[1], 3);   /* case aside; never the L40S */
    sky_accel_request a100 = { .type = "a100" };
    assert_int_equal(sky_accel_choose(&a100, g, n, chosen), 1);
    assert_int_equal(chosen[0], 2);
    sky_accel_request h100 = { .type = "H100" };
    assert_int_equal(sky_accel_choose(&h100, g, n, chosen), 0);
    sky_accel_request three = { .type = "L4", .count = 3 };
    assert_int_equal(sky_accel_choose(&three, g, n, chosen), 0);   /* too few */
    sky_accel_request one = { .type = "L4", .count = 1 };
    assert_int_equal(sky_accel_choose(&one, g, n, chosen), 1);
}

static void each_worker_gets_its_own_slice(void **state)
{
    (void)state;
    int chosen[8] = { 0, 1, 2, 3, 4, 5, 6, 7 }, out[8];
    /* 8 GPUs, 2 workers: 4 each, disjoint */
    assert_int_equal(sky_accel_slice(chosen, 8, 0, 2, out), 4);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[3], 3);
    assert_int_equal(sky_accel_slice(chosen, 8, 1, 2, out), 4);
    assert_int_equal(out[0], 4);
    /* 8 GPUs, 3 workers: 2, 3, 3 — every GPU used once */
    int seen[8] = { 0 }, total = 0;
    for (int w = 0; w < 3; w++) {
        int k = sky_accel_slice(chosen, 8, w, 3, out);
        assert_true(k >= 2 && k <= 3);
        for (int i = 0; i < k; i++)
            seen[out[i]]++;
        total += k;
    }
    assert_int_equal(total, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(seen[i], 1);
    /* 2 GPUs, 4 workers: they share, round robin */
    int two[2] = { 5, 7 };
    assert_int_equal(sky_accel_slice(two, 2, 2, 4, out), 1);
    assert_int_equal(out[0], 5);
    assert_int_equal(sky_accel_slice(two, 2, 3, 4, out), 1);
    assert_int_equal(out[0], 7);
}

static void a_node_is_described_for_errors(void **state)
{
    (void)state;
    sky_gpu g[3] = { { "a", "NVIDIA L4" }, { "b", "NVIDIA L4" }, { "c", "NVIDIA T4" } };
    char out[200];
    sky_accel_describe(g, 3, out, sizeof out);
    assert_string_equal(out, "2 x NVIDIA L4, NVIDIA T4");
    sky_accel_describe(g, 0, out, sizeof out);
    assert_string_equal(out, "no GPU");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_parse_type_and_count),
        cmocka_unit_test(models_match_by_word_not_by_prefix),
        cmocka_unit_test(each_worker_gets_its_own_slice),
        cmocka_unit_test(a_node_is_described_for_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
