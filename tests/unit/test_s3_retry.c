/* test_s3_retry: which failures the S3 client retries, and the backoff
 * (full jitter, base 100 ms, cap 5 s) it waits before trying again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "s3/retry.h"

static void server_errors_and_throttling_are_retried(void **state)
{
    assert_true(s3_retry_is_retryable(CURLE_OK, 500, "InternalError"));
    assert_true(s3_retry_is_retryable(CURLE_OK, 502, NULL));
    assert_true(s3_retry_is_retryable(CURLE_OK, 503, "SlowDown"));
    assert_true(s3_retry_is_retryable(CURLE_OK, 504, ""));
    assert_true(s3_retry_is_retryable(CURLE_OK, 429, NULL));
    /* S3 sends RequestTimeout with status 400: the code decides. */
    assert_true(s3_retry_is_retryable(CURLE_OK, 400, "RequestTimeout"));
}

static void client_errors_are_never_retried(void **state)
{
    assert_false(s3_retry_is_retryable(CURLE_OK, 404, "NoSuchKey"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 404, "NoSuchBucket"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 403, "AccessDenied"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 403, "InvalidAccessKeyId"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 403, "SignatureDoesNotMatch"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 400, "BadDigest"));
    assert_false(s3_retry_is_retryable(CURLE_OK, 412, NULL));
}

static void timeouts_resets_and_refused_connections_are_retried(void **state)
{
    assert_true(s3_retry_is_retryable(CURLE_OPERATION_TIMEDOUT, 0, NULL));
    assert_true(s3_retry_is_retryable(CURLE_COULDNT_CONNECT, 0, NULL));
    assert_true(s3_retry_is_retryable(CURLE_RECV_ERROR, 0, NULL));
    assert_true(s3_retry_is_retryable(CURLE_SEND_ERROR, 0, NULL));
    assert_true(s3_retry_is_retryable(CURLE_GOT_NOTHING, 0, NULL));
    assert_true(s3_retry_is_retryable(CURLE_PARTIAL_FILE, 0, NULL));
}

static void local_and_tls_verification_failures_are_not_retried(void **state)
{
    assert_false(s3_retry_is_retryable(CURLE_WRITE_ERROR, 0, NULL));
    assert_false(s3_retry_is_retryable(CURLE_ABORTED_BY_CALLBACK, 0, NULL));
    assert_false(s3_retry_is_retryable(CURLE_PEER_FAILED_VERIFICATION, 0, NULL));
    assert_false(s3_retry_is_retryable(CURLE_URL_MALFORMAT, 0, NULL));
}

static void backoff_stays_under_a_ceiling_that_doubles_up_to_the_cap(void **state)
{
    uint64_t rng = 42;
    long expect_ceiling[] = { 0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000 };
    for (int attempt = 1; attempt < 10; attempt++) {
        long max_seen = 0;
        for (int i = 0; i < 2000; i++) {
            long d = s3_retry_delay_ms(attempt, &rng);
            assert_true(d >= 0);
            assert_true(d <= expect_ceiling[attempt]);
            if (d > max_seen)
                max_seen = d;
        }
        /* Full jitter spreads over the whole range, not just near the top or bottom. */
        assert_true(max_seen > expect_ceiling[attempt] / 2);
    }
}

static void backoff_is_random_so_clients_do_not_retry_in_step(void **state)
{
    uint64_t a = 1, b = 2;
    int differ = 0;
    for (int i = 0; i < 20; i++)
        differ += s3_retry_delay_ms(4, &a) != s3_retry_delay_ms(4, &b);
    assert_true(differ > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_errors_and_throttling_are_retried),
        cmocka_unit_test(client_errors_are_never_retried),
        cmocka_unit_test(timeouts_resets_and_refused_connections_are_retried),
        cmocka_unit_test(local_and_tls_verification_failures_are_not_retried),
        cmocka_unit_test(backoff_stays_under_a_ceiling_that_doubles_up_to_the_cap),
        cmocka_unit_test(backoff_is_random_so_clients_do_not_retry_in_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
