/* retry: the retry policy of every S3 request and part (see retry.h). */
#include "s3/retry.h"

#include <curl/curl.h>
#include <string.h>

static int code_is_transient(const char *code)
{
    static const char *const transient[] = {
        "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
        "Throttling", "ThrottlingException", "RequestLimitExceeded", "OperationAborted",
        NULL,
    };
    if (!code || !*code)
        return 0;
    for (int i = 0; transient[i]; i++)
        if (strcmp(code, transient[i]) == 0)
            return 1;
    return 0;
}

static int curl_failure_is_transient(int rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:      /* a server restarting, a full listen queue */
    case CURLE_COULDNT_RESOLVE_HOST: /* a resolver hiccup; bounded by the attempt limit */
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:           /* connection reset while sending */
    case CURLE_RECV_ERROR:           /* connection reset while receiving */
    case CURLE_GOT_NOTHING:          /* server closed a kept-alive connection */
    case CURLE_PARTIAL_FILE:         /* body shorter than Content-Length */
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:    /* handshake cut short; certificate errors are not this code */
        return 1;
    default:
        return 0;
    }
}

int s3_retry_is_retryable(int curl_code, long http_status, const char *s3_code)
{
    if (curl_code != CURLE_OK)
        return curl_failure_is_transient(curl_code);
    if (http_status == 429 || http_status == 500 || http_status == 502 ||
        http_status == 503 || http_status == 504)
        return 1;
    return code_is_transient(s3_code);
}

/* xorshift64*: plenty for spreading retries, and deterministic under test. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

long s3_retry_delay_ms(int failed_attempts, uint64_t *rng)
{
    long ceiling = S3_RETRY_BASE_MS;
    for (int i = 1; i < failed_attempts && ceiling < S3_RETRY_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > S3_RETRY_CAP_MS)
        ceiling = S3_RETRY_CAP_MS;
    return (long)(next_random(rng) % (uint64_t)(ceiling + 1));
}
