/*
 * test_sigv4: pins src/s3/sigv4.c to the AWS Signature Version 4 test
 * vectors (tests/data/aws-sigv4-test-suite, one cmocka test per case folder,
 * read at run time) and to S3's own rules and published S3 examples.
 *
 * Every case of the suite is applicable and run: the `normalize: true` cases
 * exercise sigv4_request.normalize_path (other services' path rules), and
 * the two `post-sts-header-*` cases are signed as their `omit_session_token`
 * flag says (the token added after signing, or signed with the request).
 * A case folder with a missing file fails its test; nothing is skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "s3/sigv4.h"
#include "util/buf.h"

/* ---- reading a case folder ---------------------------------------------- */

#define MAX_FIELDS 32

typedef struct vector_case {
    char dir[1024];
    /* context.json */
    char access_key[128], secret_key[128], token[1024], region[64], service[64];
    char timestamp[32];
    int normalize, sign_body, omit_session_token;
    unsigned expires;
    /* request.txt */
    char method[16];
    char *path;
    s3_kv query[MAX_FIELDS];
    size_t nquery;
    s3_kv headers[MAX_FIELDS];
    size_t nheaders;
    char *body;
    /* every string above that was allocated, to free at the end */
    char *owned[4 * MAX_FIELDS + 8];
    size_t nowned;
} vector_case;

static char *read_file(const char *dir, const char *name)
{
    char path[1200];
    FILE *f;
    sky_buf b = SKY_BUF_INIT;
    char chunk[4096];
    size_t n;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sky_buf_append(&b, chunk, n);
    fclose(f);
    sky_buf_cstr(&b);
    return (char *)b.data ? (char *)b.data : strdup("");
}

static char *keep(vector_case *c, char *s)
{
    assert_true(c->nowned < sizeof c->owned / sizeof c->owned[0]);
    c->owned[c->nowned++] = s;
    return s;
}

/* The value of "key" in the flat context.json: a string (copied into out)
 * or a literal (true/false/number), returned as text. Empty when absent. */
static void json_value(const char *json, const char *key, char *out, size_t outlen)
{
    char quoted[80];
    const char *p;
    size_t n = 0;

    out[0] = '\0';
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    p = strstr(json, quoted);
    if (!p)
        return;
    p = strchr(p + strlen(quoted), ':');
    assert_non_null(p);
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < outlen; p++)
            out[n++] = *p;
    } else {
        for (; *p && *p != ',' && *p != '\n' && *p != '}' && n + 1 < outlen; p++)
            out[n++] = *p;
    }
    out[n] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static char *percent_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t k = 0;
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[k++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* "a=1&b=%E1%88%B4" → decoded pairs (the signer re-encodes them). */
static void parse_query(vector_case *c, const char *q)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t nlen = eq ? (size_t)(eq - q) : len;
        assert_true(c->nquery < MAX_FIELDS);
        c->query[c->nquery].name = keep(c, percent_decode(q, nlen));
        c->query[c->nquery].value =
            keep(c, eq ? percent_decode(eq + 1, len - nlen - 1) : strdup(""));
        c->nquery++;
        q += len + (amp ? 1 : 0);
    }
}

/* request.txt: "METHOD PATH[?QUERY] HTTP/1.1", header lines (a line that
 * starts with whitespace continues the previous value), blank line, body. */
static void parse_request(vector_case *c, char *text)
{
    char *line_end = strchr(text, '\n');
    char *proto, *qmark, *p;
    char *target;

    assert_non_null(line_end);
    *line_end = '\0';
    proto = strstr(text, " HTTP/");
    assert_non_null(proto);
    *proto = '\0';
    p = strchr(text, ' ');
    assert_non_null(p);
    *p = '\0';
    snprintf(c->method, sizeof c->method, "%s", text);
    target = p + 1;
    qmark = strchr(target, '?');
    if (qmark)
        *qmark = '\0';
    c->path = keep(c, strdup(target));
    if (qmark)
        parse_query(c, qmark + 1);

    p = line_end + 1;
    c->body = NULL;
    while (*p) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) {
            c->body = keep(c, strdup(end ? end + 1 : ""));
            break;
        }
        if ((*p == ' ' || *p == '\t') && c->nheaders > 0) {
            s3_kv *prev = &c->headers[c->nheaders - 1];
            size_t plen = strlen(prev->value);
            char *joined = malloc(plen + 1 + len + 1);
            assert_non_null(joined);
            memcpy(joined, prev->value, plen);
            joined[plen] = '\n';
            memcpy(joined + plen + 1, p, len);
            joined[plen + 1 + len] = '\0';
            prev->value = keep(c, joined);
        } else {
            char *colon = memchr(p, ':', len);
            assert_non_null(colon);
            assert_true(c->nheaders < MAX_FIELDS);
            c->headers[c->nheaders].name = keep(c, strndup(p, (size_t)(colon - p)));
            c->headers[c->nheaders].value = keep(c, strndup(colon + 1, len - (size_t)(colon - p) - 1));
            c->nheaders++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (!c->body)
        c->body = keep(c, strdup(""));
}

static void load_case(vector_case *c, const char *dir)
{
    char *json, *request, tmp[64];

    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    json = read_file(dir, "context.json");
    json_value(json, "access_key_id", c->access_key, sizeof c->access_key);
    json_value(json, "secret_access_key", c->secret_key, sizeof c->secret_key);
    json_value(json, "token", c->token, sizeof c->token);
    json_value(json, "region", c->region, sizeof c->region);
    json_value(json, "service", c->service, sizeof c->service);
    json_value(json, "timestamp", c->timestamp, sizeof c->timestamp);
    json_value(json, "normalize", tmp, sizeof tmp);
    c->normalize = strcmp(tmp, "true") == 0;
    json_value(json, "sign_body", tmp, sizeof tmp);
    c->sign_body = strcmp(tmp, "true") == 0;
    json_value(json, "omit_session_token", tmp, sizeof tmp);
    c->omit_session_token = strcmp(tmp, "true") == 0;
    json_value(json, "expiration_in_seconds", tmp, sizeof tmp);
    c->expires = (unsigned)strtoul(tmp, NULL, 10);
    free(json);
    assert_true(c->access_key[0] && c->secret_key[0] && c->region[0] && c->service[0]);

    request = read_file(dir, "request.txt");
    parse_request(c, request);
    free(request);
}

static void free_case(vector_case *c)
{
    for (size_t i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    c->nowned = 0;
}

/* "2015-08-30T12:36:00Z" → "20150830T123600Z" */
static void amz_date_of(const char *ts, char out[17])
{
    size_t k = 0;
    for (const char *p = ts; *p && k < 16; p++)
        if (*p != '-' && *p != ':')
            out[k++] = *p;
    out[k] = '\0';
}

static void assert_file_equals(const vector_case *c, const char *name, const char *actual)
{
    char *expected = read_file(c->dir, name);
    if (strcmp(expected, actual) != 0)
        fail_msg("%s/%s differs\n--- expected\n%s\n--- actual\n%s", c->dir, name, expected, actual);
    free(expected);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits "a&b&c" into a sorted array of percent-decoded copies (decoded,
 * because a signed-request file may show raw UTF-8 where we send %XX). */
static char **sorted_params(const char *q, size_t *count)
{
    char *copy = strdup(q), *save = NULL;
    char **list = calloc(64, sizeof *list);
    size_t n = 0;
    assert_non_null(copy);
    assert_non_null(list);
    for (char *t = strtok_r(copy, "&", &save); t; t = strtok_r(NULL, "&", &save)) {
        assert_true(n < 63);
        list[n++] = percent_decode(t, strlen(t));
    }
    free(copy);
    qsort(list, n, sizeof *list, compare_strings);
    *count = n;
    return list;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* ---- one vector case ---------------------------------------------------- */

static void check_header_signing(vector_case *c, const char *amz_date, const char *body_hash)
{
    s3_kv headers[MAX_FIELDS + 3];
    size_t n = c->nheaders;
    sky_buf auth = SKY_BUF_INIT, canonical = SKY_BUF_INIT, sts = SKY_BUF_INIT;
    char *signed_request, *auth_line, *line_end;
    const char *sig;

    memcpy(headers, c->headers, n * sizeof headers[0]);
    headers[n++] = (s3_kv){ "X-Amz-Date", amz_date };
    if (c->token[0] && !c->omit_session_token)
        headers[n++] = (s3_kv){ "X-Amz-Security-Token", c->token };
    if (c->sign_body)
        headers[n++] = (s3_kv){ "x-amz-content-sha256", body_hash };

    sigv4_request req = { c->method, c->path, c->query, c->nquery, headers, n, body_hash,
                          c->normalize };
    sigv4_key key = { c->access_key, c->secret_key, c->token[0] ? c->token : NULL, c->region,
                      c->service };
    assert_int_equal(sigv4_authorization(&req, &key, amz_date, &auth, &canonical, &sts), 0);
    assert_file_equals(c, "header-canonical-request.txt", sky_buf_cstr(&canonical));
    assert_file_equals(c, "header-string-to-sign.txt", sky_buf_cstr(&sts));
    sig = strstr(sky_buf_cstr(&auth), "Signature=");
    assert_non_null(sig);
    assert_file_equals(c, "header-signature.txt", sig + strlen("Signature="));

    signed_request = read_file(c->dir, "header-signed-request.txt");
    auth_line = strstr(signed_request, "\nAuthorization:");
    assert_non_null(auth_line);
    auth_line += strlen("\nAuthorization:");
    line_end = strchr(auth_line, '\n');
    if (line_end)
        *line_end = '\0';
    assert_string_equal(sky_buf_cstr(&auth), auth_line);
    free(signed_request);

    sky_buf_free(&auth);
    sky_buf_free(&canonical);
    sky_buf_free(&sts);
}

static void check_query_signing(vector_case *c, const char *amz_date, const char *body_hash)
{
    sky_buf query = SKY_BUF_INIT, canonical = SKY_BUF_INIT, sts = SKY_BUF_INIT;
    char *signed_request, *target, *end, *sig;
    char **expected, **actual;
    size_t nexpected, nactual;
    int signs_token = c->token[0] && !c->omit_session_token;

    sigv4_request req = { c->method, c->path, c->query, c->nquery, c->headers, c->nheaders,
                          body_hash, c->normalize };
    sigv4_key key = { c->access_key, c->secret_key, signs_token ? c->token : NULL, c->region,
                      c->service };
    assert_int_equal(sigv4_presign_query(&req, &key, amz_date, c->expires, &query, &canonical,
                                         &sts), 0);
    assert_file_equals(c, "query-canonical-request.txt", sky_buf_cstr(&canonical));
    assert_file_equals(c, "query-string-to-sign.txt", sky_buf_cstr(&sts));
    sig = strstr(sky_buf_cstr(&query), "X-Amz-Signature=");
    assert_non_null(sig);
    assert_file_equals(c, "query-signature.txt", sig + strlen("X-Amz-Signature="));

    /* The signed request's parameters, as a set (the file lists them in the
     * order its signer appended them; ours are sorted). With
     * omit_session_token the token is appended after signing. */
    if (c->token[0] && c->omit_session_token) {
        sky_buf_append_str(&query, "&X-Amz-Security-Token=");
        sky_buf_append_percent(&query, c->token, strlen(c->token), 0);
    }
    signed_request = read_file(c->dir, "query-signed-request.txt");
    target = strchr(signed_request, '?');
    assert_non_null(target);
    end = strstr(target, " HTTP/");
    assert_non_null(end);
    *end = '\0';
    expected = sorted_params(target + 1, &nexpected);
    actual = sorted_params(sky_buf_cstr(&query), &nactual);
    assert_int_equal(nactual, nexpected);
    for (size_t i = 0; i < nexpected; i++)
        assert_string_equal(actual[i], expected[i]);
    free_list(expected, nexpected);
    free_list(actual, nactual);
    free(signed_request);

    sky_buf_free(&query);
    sky_buf_free(&canonical);
    sky_buf_free(&sts);
}

static void test_aws_vector(void **state)
{
    const char *dir = *state;
    vector_case *c = calloc(1, sizeof *c);
    char amz_date[17], body_hash[65];

    assert_non_null(c);
    load_case(c, dir);
    amz_date_of(c->timestamp, amz_date);
    sigv4_sha256_hex(c->body, strlen(c->body), body_hash);
    check_header_signing(c, amz_date, body_hash);
    check_query_signing(c, amz_date, body_hash);
    free_case(c);
    free(c);
}

/* ---- S3's own rules ----------------------------------------------------- */

static const char *const EMPTY_SHA256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static const sigv4_key S3_DOC_KEY = { "AKIAIOSFODNN7EXAMPLE",
                                      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL,
                                      "us-east-1", "s3" };

/* The "GET Object" example of the S3 SigV4 header-signing documentation. */
static void test_s3_doc_get_object_example_signature(void **state)
{
    s3_kv headers[] = { { "Host", "examplebucket.s3.amazonaws.com" },
                        { "Range", "bytes=0-9" },
                        { "x-amz-content-sha256", EMPTY_SHA256 },
                        { "x-amz-date", "20130524T000000Z" } };
    sigv4_request req = { "GET", "/test.txt", NULL, 0, headers, 4, EMPTY_SHA256, 0 };
    sky_buf auth = SKY_BUF_INIT;

    assert_int_equal(sigv4_authorization(&req, &S3_DOC_KEY, "20130524T000000Z", &auth, NULL, NULL), 0);
    assert_string_equal(sky_buf_cstr(&auth),
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    sky_buf_free(&auth);
}

/* The presigned-URL example of the S3 SigV4 query-signing documentation. */
static void test_s3_doc_presigned_url_example_signature(void **state)
{
    s3_kv headers[] = { { "host", "examplebucket.s3.amazonaws.com" } };
    sigv4_request req = { "GET", "/test.txt", NULL, 0, headers, 1, "UNSIGNED-PAYLOAD", 0 };
    sky_buf query = SKY_BUF_INIT;

    assert_int_equal(sigv4_presign_query(&req, &S3_DOC_KEY, "20130524T000000Z", 86400, &query,
                                         NULL, NULL), 0);
    assert_string_equal(sky_buf_cstr(&query),
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    sky_buf_free(&query);
}

/* Returns the canonical request of a GET of `path` (the caller frees). */
static char *canonical_of(const char *path, const s3_kv *query, size_t nquery)
{
    s3_kv headers[] = { { "host", "127.0.0.1:4568" },
                        { "x-amz-content-sha256", EMPTY_SHA256 },
                        { "x-amz-date", "20240101T000000Z" } };
    sigv4_request req = { "GET", path, query, nquery, headers, 3, EMPTY_SHA256, 0 };
    sky_buf auth = SKY_BUF_INIT, canonical = SKY_BUF_INIT;

    assert_int_equal(sigv4_authorization(&req, &S3_DOC_KEY, "20240101T000000Z", &auth, &canonical, NULL), 0);
    sky_buf_free(&auth);
    sky_buf_cstr(&canonical);
    return (char *)canonical.data;
}

/* The second line of a canonical request: the canonical URI. */
static void assert_canonical_uri(const char *canonical, const char *uri)
{
    const char *start = strchr(canonical, '\n') + 1;
    const char *end = strchr(start, '\n');
    char *got = strndup(start, (size_t)(end - start));
    assert_string_equal(got, uri);
    free(got);
}

static void test_payload_hash_header_is_signed_and_ends_the_canonical_request(void **state)
{
    char *canonical = canonical_of("/bucket/key", NULL, 0);
    char line[128];
    snprintf(line, sizeof line, "\nx-amz-content-sha256:%s\n", EMPTY_SHA256);
    assert_non_null(strstr(canonical, line));
    assert_non_null(strstr(canonical, "\nhost;x-amz-content-sha256;x-amz-date\n"));
    assert_string_equal(canonical + strlen(canonical) - 64, EMPTY_SHA256);
    free(canonical);
}

static void test_key_with_space_unicode_plus_equals_is_encoded_exactly_once(void **state)
{
    const char *key = "dir/my file+v=1 \xe2\x9c\x93.txt";
    const char *expected = "/bucket/dir/my%20file%2Bv%3D1%20%E2%9C%93.txt";
    sky_buf path = SKY_BUF_INIT;
    char *canonical;

    /* How the S3 client builds a path: the key encoded once, '/' kept. */
    sky_buf_append_str(&path, "/bucket/");
    sky_buf_append_percent(&path, key, strlen(key), 1);
    assert_string_equal(sky_buf_cstr(&path), expected);

    canonical = canonical_of(sky_buf_cstr(&path), NULL, 0);
    assert_canonical_uri(canonical, expected);      /* not %2520 etc. */
    free(canonical);

    /* A path whose bytes were not encoded yet is encoded once too. */
    canonical = canonical_of("/bucket/dir/my file+v=1 \xe2\x9c\x93.txt", NULL, 0);
    assert_canonical_uri(canonical, expected);
    free(canonical);

    /* Lowercase escapes are the same bytes: uppercased, not re-encoded. */
    canonical = canonical_of("/bucket/a%2bb", NULL, 0);
    assert_canonical_uri(canonical, "/bucket/a%2Bb");
    free(canonical);
    sky_buf_free(&path);
}

static void test_slashes_and_dot_segments_in_s3_keys_are_kept(void **state)
{
    char *canonical = canonical_of("/bucket/a//b/./c/../d/", NULL, 0);
    assert_canonical_uri(canonical, "/bucket/a//b/./c/../d/");
    free(canonical);
}

static void test_query_values_are_encoded_once_with_percent_20_and_sorted(void **state)
{
    s3_kv query[] = { { "prefix", "my dir/x+y" }, { "list-type", "2" }, { "delimiter", "/" },
                      { "uploads", "" } };
    char *canonical = canonical_of("/bucket", query, 4);
    assert_non_null(strstr(canonical,
        "\ndelimiter=%2F&list-type=2&prefix=my%20dir%2Fx%2By&uploads=\n"));
    free(canonical);
}

static void test_presign_with_unsigned_payload(void **state)
{
    s3_kv headers[] = { { "host", "127.0.0.1:4568" } };
    sigv4_request req = { "PUT", "/bucket/key", NULL, 0, headers, 1, "UNSIGNED-PAYLOAD", 0 };
    sky_buf query = SKY_BUF_INIT, canonical = SKY_BUF_INIT;

    assert_int_equal(sigv4_presign_query(&req, &S3_DOC_KEY, "20240101T000000Z", 600, &query,
                                         &canonical, NULL), 0);
    assert_string_equal(sky_buf_cstr(&canonical) + canonical.len - strlen("\nUNSIGNED-PAYLOAD"),
                        "\nUNSIGNED-PAYLOAD");
    assert_non_null(strstr(sky_buf_cstr(&query), "X-Amz-Expires=600&"));
    assert_null(strstr(sky_buf_cstr(&query), "Content-Sha256"));
    sky_buf_free(&query);
    sky_buf_free(&canonical);
}

static void test_session_token_is_signed_in_header_and_presigned_query(void **state)
{
    const char *token = "FQoGZXIvYXdzE+/token==";
    sigv4_key key = S3_DOC_KEY;
    s3_kv headers[] = { { "host", "127.0.0.1:4568" },
                        { "x-amz-content-sha256", EMPTY_SHA256 },
                        { "x-amz-date", "20240101T000000Z" },
                        { "x-amz-security-token", token } };
    sigv4_request req = { "GET", "/bucket/key", NULL, 0, headers, 4, EMPTY_SHA256, 0 };
    sky_buf auth = SKY_BUF_INIT, canonical = SKY_BUF_INIT, query = SKY_BUF_INIT;

    key.session_token = token;
    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &auth, &canonical, NULL), 0);
    assert_non_null(strstr(sky_buf_cstr(&canonical), "\nx-amz-security-token:FQoGZXIvYXdzE+/token==\n"));
    assert_non_null(strstr(sky_buf_cstr(&auth),
                           "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));

    req.headers = headers;
    req.nheaders = 1;
    req.payload_hash = "UNSIGNED-PAYLOAD";
    assert_int_equal(sigv4_presign_query(&req, &key, "20240101T000000Z", 60, &query, &canonical, NULL), 0);
    assert_non_null(strstr(sky_buf_cstr(&canonical),
                           "&X-Amz-Security-Token=FQoGZXIvYXdzE%2B%2Ftoken%3D%3D&"));
    assert_non_null(strstr(sky_buf_cstr(&query), "&X-Amz-Security-Token=FQoGZXIvYXdzE%2B%2Ftoken%3D%3D&"));
    sky_buf_free(&auth);
    sky_buf_free(&canonical);
    sky_buf_free(&query);
}

static void test_header_values_are_trimmed_and_inner_spaces_collapsed(void **state)
{
    s3_kv headers[] = { { "Host", "  127.0.0.1:4568 " },
                        { "X-Amz-Meta-Note", "\t a   b \t c  " },
                        { "x-amz-date", "20240101T000000Z" } };
    sigv4_request req = { "GET", "/b/k", NULL, 0, headers, 3, EMPTY_SHA256, 0 };
    sky_buf auth = SKY_BUF_INIT, canonical = SKY_BUF_INIT;

    assert_int_equal(sigv4_authorization(&req, &S3_DOC_KEY, "20240101T000000Z", &auth, &canonical, NULL), 0);
    assert_non_null(strstr(sky_buf_cstr(&canonical),
                           "\nhost:127.0.0.1:4568\nx-amz-date:20240101T000000Z\nx-amz-meta-note:a b c\n"));
    sky_buf_free(&auth);
    sky_buf_free(&canonical);
}

static void test_invalid_requests_are_refused(void **state)
{
    s3_kv no_host[] = { { "x-amz-date", "20240101T000000Z" } };
    s3_kv host[] = { { "host", "h" } };
    s3_kv bad_name[] = { { "host", "h" }, { "bad name", "v" } };
    sigv4_request req = { "GET", "/b/k", NULL, 0, no_host, 1, EMPTY_SHA256, 0 };
    sigv4_key key = S3_DOC_KEY;
    sky_buf out = SKY_BUF_INIT;

    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &out, NULL, NULL), -1);
    req.headers = bad_name;
    req.nheaders = 2;
    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &out, NULL, NULL), -1);
    req.headers = host;
    req.nheaders = 1;
    req.path = "b/k";
    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &out, NULL, NULL), -1);
    req.path = "/b/k";
    assert_int_equal(sigv4_authorization(&req, &key, "2024-01-01", &out, NULL, NULL), -1);
    assert_int_equal(sigv4_presign_query(&req, &key, "20240101T000000Z", 0, &out, NULL, NULL), -1);
    assert_int_equal(sigv4_presign_query(&req, &key, "20240101T000000Z", 604801, &out, NULL, NULL), -1);
    key.secret_key = "";
    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &out, NULL, NULL), -1);
    key = S3_DOC_KEY;
    assert_int_equal(sigv4_authorization(&req, &key, "20240101T000000Z", &out, NULL, NULL), 0);
    sky_buf_free(&out);
}

static void test_amz_date_formats_utc_seconds(void **state)
{
    char d[17];
    sigv4_amz_date(1440938160LL, d);
    assert_string_equal(d, "20150830T123600Z");
    sigv4_amz_date(0, d);
    assert_string_equal(d, "19700101T000000Z");
}

static void test_uri_encode_keeps_only_unreserved(void **state)
{
    sky_buf b = SKY_BUF_INIT;
    sky_buf_append_percent(&b, "aZ09-_.~ /+*%", 13, 0);
    assert_string_equal(sky_buf_cstr(&b), "aZ09-_.~%20%2F%2B%2A%25");
    sky_buf_reset(&b);
    sky_buf_append_percent(&b, "a/b", 3, 1);
    assert_string_equal(sky_buf_cstr(&b), "a/b");
    sky_buf_free(&b);
}

/* ---- runner: one test per vector folder, then the S3 tests -------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    static const struct CMUnitTest s3_tests[] = {
        cmocka_unit_test(test_s3_doc_get_object_example_signature),
        cmocka_unit_test(test_s3_doc_presigned_url_example_signature),
        cmocka_unit_test(test_payload_hash_header_is_signed_and_ends_the_canonical_request),
        cmocka_unit_test(test_key_with_space_unicode_plus_equals_is_encoded_exactly_once),
        cmocka_unit_test(test_slashes_and_dot_segments_in_s3_keys_are_kept),
        cmocka_unit_test(test_query_values_are_encoded_once_with_percent_20_and_sorted),
        cmocka_unit_test(test_presign_with_unsigned_payload),
        cmocka_unit_test(test_session_token_is_signed_in_header_and_presigned_query),
        cmocka_unit_test(test_header_values_are_trimmed_and_inner_spaces_collapsed),
        cmocka_unit_test(test_invalid_requests_are_refused),
        cmocka_unit_test(test_amz_date_formats_utc_seconds),
        cmocka_unit_test(test_uri_encode_keeps_only_unreserved),
    };
    const char *data = getenv("SKYRUN_TEST_DATA");
    char suite[1024];
    char *names[256];
    char *dirs[256];
    struct CMUnitTest vectors[256];
    size_t n = 0;
    int failures;
    DIR *d;
    struct dirent *e;

    snprintf(suite, sizeof suite, "%s/aws-sigv4-test-suite", data ? data : "tests/data");
    d = opendir(suite);
    if (!d) {
        fprintf(stderr, "cannot open the SigV4 test suite %s: %s\n", suite, strerror(errno));
        return 1;
    }
    while ((e = readdir(d)) != NULL && n < 256) {
        char probe[1400];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(probe, sizeof probe, "%s/%s", suite, e->d_name);
        if (stat(probe, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;   /* LICENSE: every folder is a case, and must be complete */
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], compare_names);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(suite) + strlen(names[i]) + 2;
        dirs[i] = malloc(len);
        snprintf(dirs[i], len, "%s/%s", suite, names[i]);
        vectors[i] = (struct CMUnitTest){ names[i], test_aws_vector, NULL, NULL, dirs[i] };
    }
    if (n == 0) {
        fprintf(stderr, "no SigV4 test vectors found in %s\n", suite);
        return 1;
    }
    failures = _cmocka_run_group_tests("aws_sigv4_test_suite", vectors, n, NULL, NULL);
    failures += cmocka_run_group_tests_name("s3_sigv4_rules", s3_tests, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(dirs[i]);
    }
    return failures != 0;
}
