/*
 * sigv4: AWS Signature Version 4 for S3 requests — the canonical request,
 * the string to sign, the Authorization header and presigned query strings.
 *
 * Everything here is a pure function of its arguments (the clock is the
 * caller's), which is what lets tests/unit/test_sigv4.c pin it byte for byte
 * against the AWS test vectors. The derived signing key is wiped after use:
 * it is as good as the secret key for a day.
 */
#include "s3/sigv4.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "util/alloc.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"

/* One header after canonicalisation: lowercase name, trimmed value. */
typedef struct canon_header {
    char *name;
    sky_buf value;
    size_t order;    /* position in the request, so duplicates keep their order */
} canon_header;

/* One query parameter after encoding: "name" and "value" percent-encoded. */
typedef struct canon_param {
    sky_buf name;
    sky_buf value;
} canon_param;

void sigv4_sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, n, digest);
    sky_hex(digest, sizeof digest, hex);
}

void sigv4_amz_date(long long t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- canonical URI ------------------------------------------------------ */

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 3986 section 5.2.4 dot-segment removal plus collapsing of empty
 * segments, as the non-S3 services (and the test vectors) want it. The
 * result always starts with '/' and keeps a trailing '/' if the input had
 * one after its last real segment. */
static void normalize_path(const char *path, sky_buf *out)
{
    size_t n = strlen(path);
    /* Segment start offsets in `out`, to drop the last one on "..". */
    size_t *starts = sky_xmalloc((n + 1) * sizeof *starts);
    size_t depth = 0;
    int trailing_slash = 0;

    sky_buf_reset(out);
    for (size_t i = 0; i < n;) {
        while (i < n && path[i] == '/')
            i++;
        size_t j = i;
        while (j < n && path[j] != '/')
            j++;
        size_t len = j - i;
        if (len == 0)
            break;
        trailing_slash = j < n;
        if (len == 1 && path[i] == '.') {
            trailing_slash = 1;
        } else if (len == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (depth > 0)
                out->len = starts[--depth];
            trailing_slash = 1;
        } else {
            starts[depth++] = out->len;
            sky_buf_append_byte(out, '/');
            sky_buf_append(out, path + i, len);
        }
        i = j;
    }
    if (out->len == 0 || trailing_slash)
        sky_buf_append_byte(out, '/');
    free(starts);
}

/* The canonical URI of an already-encoded path: "%XX" escapes are kept
 * (hex uppercased) so nothing is encoded twice, unreserved characters and
 * '/' stay, and every other byte (a raw space, UTF-8, '+', '=') is encoded
 * once — the same text S3 derives from the decoded key. */
static void canonical_uri(const char *path, int normalize, sky_buf *out)
{
    sky_buf normalized = SKY_BUF_INIT;
    const char *p = path;
    size_t n;

    if (normalize) {
        normalize_path(path, &normalized);
        p = sky_buf_cstr(&normalized);
    }
    n = strlen(p);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%' && i + 2 < n && hex_value(p[i + 1]) >= 0 && hex_value(p[i + 2]) >= 0) {
            uint8_t esc[3] = { '%', (uint8_t)toupper((unsigned char)p[i + 1]),
                               (uint8_t)toupper((unsigned char)p[i + 2]) };
            sky_buf_append(out, esc, 3);
            i += 2;
        } else {
            sky_buf_append_percent(out, p + i, 1, 1);
        }
    }
    sky_buf_free(&normalized);
}

/* ---- canonical query ---------------------------------------------------- */

static int compare_params(const void *a, const void *b)
{
    const canon_param *x = a, *y = b;
    int c = strcmp(sky_buf_cstr((sky_buf *)&x->name), sky_buf_cstr((sky_buf *)&y->name));
    if (c != 0)
        return c;
    return strcmp(sky_buf_cstr((sky_buf *)&x->value), sky_buf_cstr((sky_buf *)&y->value));
}

static void add_param(canon_param *params, size_t *count, const char *name, const char *value)
{
    canon_param *p = &params[(*count)++];
    sky_buf_init(&p->name);
    sky_buf_init(&p->value);
    sky_buf_append_percent(&p->name, name, strlen(name), 0);
    sky_buf_append_percent(&p->value, value ? value : "", value ? strlen(value) : 0, 0);
    sky_buf_cstr(&p->name);
    sky_buf_cstr(&p->value);
}

/* "a=1&b=2" from the request's parameters plus `extra` (the X-Amz-*
 * parameters of a presigned URL), each encoded once and sorted by name,
 * then value. */
static void canonical_query(const s3_kv *query, size_t nquery, const s3_kv *extra,
                            size_t nextra, sky_buf *out)
{
    size_t total = nquery + nextra, count = 0;
    canon_param *params;

    if (total == 0)
        return;
    params = sky_xcalloc(total, sizeof *params);
    for (size_t i = 0; i < nquery; i++)
        add_param(params, &count, query[i].name, query[i].value);
    for (size_t i = 0; i < nextra; i++)
        add_param(params, &count, extra[i].name, extra[i].value);
    qsort(params, count, sizeof *params, compare_params);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            sky_buf_append_byte(out, '&');
        sky_buf_append(out, params[i].name.data, params[i].name.len);
        sky_buf_append_byte(out, '=');
        sky_buf_append(out, params[i].value.data, params[i].value.len);
        sky_buf_free(&params[i].name);
        sky_buf_free(&params[i].value);
    }
    free(params);
}

/* ---- canonical headers -------------------------------------------------- */

static int is_header_name_char(unsigned char c)
{
    return c > 32 && c < 127 && c != ':';
}

/* Value with leading/trailing whitespace removed and every inner run of
 * whitespace (folded continuation lines included) turned into one space. */
static void append_trimmed_value(sky_buf *out, const char *v)
{
    int pending_space = 0;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            pending_space = out->len > 0;
            continue;
        }
        if (pending_space)
            sky_buf_append_byte(out, ' ');
        pending_space = 0;
        sky_buf_append_byte(out, c);
    }
}

static int compare_headers(const void *a, const void *b)
{
    const canon_header *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void free_headers(canon_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        sky_buf_free(&h[i].value);
    }
    free(h);
}

/* Lowercased, sorted, trimmed headers; duplicates merged later. Returns
 * NULL when a header has an empty or invalid name or when "host" is
 * missing (S3 and every SigV4 service require it signed). */
static canon_header *collect_headers(const s3_kv *headers, size_t n)
{
    canon_header *h;
    int have_host = 0;

    if (n == 0 || !headers)
        return NULL;
    h = sky_xcalloc(n, sizeof *h);
    for (size_t i = 0; i < n; i++) {
        const char *name = headers[i].name;
        size_t len = name ? strlen(name) : 0;
        if (len == 0 || !headers[i].value)
            goto invalid;
        h[i].name = sky_xmalloc(len + 1);
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)name[k];
            if (!is_header_name_char(c))
                goto invalid;
            h[i].name[k] = (char)tolower(c);
        }
        h[i].name[len] = '\0';
        h[i].order = i;
        sky_buf_init(&h[i].value);
        append_trimmed_value(&h[i].value, headers[i].value);
        sky_buf_cstr(&h[i].value);
        if (strcmp(h[i].name, "host") == 0)
            have_host = 1;
    }
    if (!have_host)
        goto invalid;
    qsort(h, n, sizeof *h, compare_headers);
    return h;

invalid:
    free_headers(h, n);
    return NULL;
}

/* canonical: "name:v1,v2\n" per distinct name; signed: "a;b;c". */
static int canonical_headers(const s3_kv *headers, size_t n, sky_buf *canonical, sky_buf *signed_list)
{
    canon_header *h = collect_headers(headers, n);
    if (!h)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int same_as_previous = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (same_as_previous) {
            /* The newline of the previous line is replaced by ",value\n". */
            canonical->len--;
            sky_buf_append_byte(canonical, ',');
        } else {
            if (signed_list->len > 0)
                sky_buf_append_byte(signed_list, ';');
            sky_buf_append_str(signed_list, h[i].name);
            sky_buf_append_str(canonical, h[i].name);
            sky_buf_append_byte(canonical, ':');
        }
        sky_buf_append(canonical, h[i].value.data, h[i].value.len);
        sky_buf_append_byte(canonical, '\n');
    }
    free_headers(h, n);
    sky_buf_cstr(signed_list);
    return 0;
}

/* ---- signing ------------------------------------------------------------ */

static int valid_amz_date(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return 0;
    return 1;
}

static int valid_scope_part(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s <= 32)
            return 0;
    return 1;
}

static int valid_key(const sigv4_key *key)
{
    return key && valid_scope_part(key->access_key) && key->secret_key && *key->secret_key &&
           valid_scope_part(key->region) && valid_scope_part(key->service);
}

static int valid_request(const sigv4_request *req)
{
    if (!req || !req->method || !*req->method || !req->path || req->path[0] != '/' ||
        !req->payload_hash || !*req->payload_hash)
        return 0;
    if (req->nquery > 0 && !req->query)
        return 0;
    for (size_t i = 0; i < req->nquery; i++)
        if (!req->query[i].name)
            return 0;
    return 1;
}

/* "20150830/us-east-1/s3/aws4_request" */
static void credential_scope(const sigv4_key *key, const char *amz_date, sky_buf *out)
{
    sky_buf_append(out, amz_date, 8);
    sky_buf_printf(out, "/%s/%s/aws4_request", key->region, key->service);
}

static void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                        unsigned char out[32])
{
    unsigned int outlen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen);
}

/* Hex signature of string_to_sign: HMAC chain secret → date → region →
 * service → "aws4_request" → string to sign. */
static void compute_signature(const sigv4_key *key, const char *amz_date,
                              const sky_buf *string_to_sign, char hex[65])
{
    size_t slen = strlen(key->secret_key);
    unsigned char *k0 = sky_xmalloc(slen + 4);
    unsigned char k[32];

    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, key->secret_key, slen);
    hmac_sha256(k0, slen + 4, amz_date, 8, k);
    hmac_sha256(k, 32, key->region, strlen(key->region), k);
    hmac_sha256(k, 32, key->service, strlen(key->service), k);
    hmac_sha256(k, 32, "aws4_request", 12, k);
    hmac_sha256(k, 32, string_to_sign->data, string_to_sign->len, k);
    sky_hex(k, 32, hex);
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(k, sizeof k);
    free(k0);
}

/* canonical request → string to sign → signature. `query` is the already
 * canonical query string. */
static int sign(const sigv4_request *req, const sigv4_key *key, const char *amz_date,
                const sky_buf *query, sky_buf *canonical_out, sky_buf *sts_out,
                sky_buf *signed_headers, char signature[65])
{
    sky_buf canonical = SKY_BUF_INIT, headers = SKY_BUF_INIT, sts = SKY_BUF_INIT;
    char hash[65];
    int rc = -1;

    sky_buf_append_str(&canonical, req->method);
    sky_buf_append_byte(&canonical, '\n');
    canonical_uri(req->path, req->normalize_path, &canonical);
    sky_buf_append_byte(&canonical, '\n');
    sky_buf_append(&canonical, query->data, query->len);
    sky_buf_append_byte(&canonical, '\n');
    if (canonical_headers(req->headers, req->nheaders, &headers, signed_headers) != 0)
        goto done;
    sky_buf_append(&canonical, headers.data, headers.len);
    sky_buf_append_byte(&canonical, '\n');
    sky_buf_append(&canonical, signed_headers->data, signed_headers->len);
    sky_buf_append_byte(&canonical, '\n');
    sky_buf_append_str(&canonical, req->payload_hash);

    sigv4_sha256_hex(canonical.data, canonical.len, hash);
    sky_buf_printf(&sts, SIGV4_ALGORITHM "\n%s\n", amz_date);
    credential_scope(key, amz_date, &sts);
    sky_buf_printf(&sts, "\n%s", hash);

    compute_signature(key, amz_date, &sts, signature);
    if (canonical_out) {
        sky_buf_reset(canonical_out);
        sky_buf_append(canonical_out, canonical.data, canonical.len);
        sky_buf_cstr(canonical_out);
    }
    if (sts_out) {
        sky_buf_reset(sts_out);
        sky_buf_append(sts_out, sts.data, sts.len);
        sky_buf_cstr(sts_out);
    }
    rc = 0;
done:
    sky_buf_free(&canonical);
    sky_buf_free(&headers);
    sky_buf_free(&sts);
    return rc;
}

int sigv4_authorization(const sigv4_request *req, const sigv4_key *key, const char *amz_date,
                        sky_buf *authorization, sky_buf *canonical, sky_buf *string_to_sign)
{
    sky_buf query = SKY_BUF_INIT, signed_headers = SKY_BUF_INIT;
    char signature[65];
    int rc = -1;

    if (!valid_request(req) || !valid_key(key) || !valid_amz_date(amz_date) || !authorization)
        return -1;
    canonical_query(req->query, req->nquery, NULL, 0, &query);
    if (sign(req, key, amz_date, &query, canonical, string_to_sign, &signed_headers,
             signature) != 0)
        goto done;
    sky_buf_reset(authorization);
    sky_buf_printf(authorization, SIGV4_ALGORITHM " Credential=%s/", key->access_key);
    credential_scope(key, amz_date, authorization);
    sky_buf_printf(authorization, ", SignedHeaders=%s, Signature=%s",
                   sky_buf_cstr(&signed_headers), signature);
    rc = 0;
done:
    sky_buf_free(&query);
    sky_buf_free(&signed_headers);
    return rc;
}

/* The "host;x-amz-..." list for X-Amz-SignedHeaders, computed the same way
 * the canonical headers will be. */
static int signed_header_list(const sigv4_request *req, sky_buf *out)
{
    sky_buf ignored = SKY_BUF_INIT;
    int rc = canonical_headers(req->headers, req->nheaders, &ignored, out);
    sky_buf_free(&ignored);
    return rc;
}

int sigv4_presign_query(const sigv4_request *req, const sigv4_key *key, const char *amz_date,
                        unsigned expires_seconds, sky_buf *query,
                        sky_buf *canonical, sky_buf *string_to_sign)
{
    sky_buf scope = SKY_BUF_INIT, signed_list = SKY_BUF_INIT, canon_query = SKY_BUF_INIT;
    sky_buf signed_again = SKY_BUF_INIT;
    char expires[16], signature[65];
    s3_kv extra[6];
    size_t nextra = 0;
    int rc = -1;

    if (!valid_request(req) || !valid_key(key) || !valid_amz_date(amz_date) || !query ||
        expires_seconds == 0 || expires_seconds > SIGV4_MAX_EXPIRES)
        return -1;
    if (signed_header_list(req, &signed_list) != 0)
        goto done;
    sky_buf_printf(&scope, "%s/", key->access_key);
    credential_scope(key, amz_date, &scope);
    snprintf(expires, sizeof expires, "%u", expires_seconds);

    extra[nextra++] = (s3_kv){ "X-Amz-Algorithm", SIGV4_ALGORITHM };
    extra[nextra++] = (s3_kv){ "X-Amz-Credential", sky_buf_cstr(&scope) };
    extra[nextra++] = (s3_kv){ "X-Amz-Date", amz_date };
    extra[nextra++] = (s3_kv){ "X-Amz-Expires", expires };
    extra[nextra++] = (s3_kv){ "X-Amz-SignedHeaders", sky_buf_cstr(&signed_list) };
    if (key->session_token && *key->session_token)
        extra[nextra++] = (s3_kv){ "X-Amz-Security-Token", key->session_token };
    canonical_query(req->query, req->nquery, extra, nextra, &canon_query);

    if (sign(req, key, amz_date, &canon_query, canonical, string_to_sign, &signed_again,
             signature) != 0)
        goto done;
    sky_buf_reset(query);
    sky_buf_append(query, canon_query.data, canon_query.len);
    sky_buf_printf(query, "&X-Amz-Signature=%s", signature);
    rc = 0;
done:
    sky_buf_free(&scope);
    sky_buf_free(&signed_list);
    sky_buf_free(&canon_query);
    sky_buf_free(&signed_again);
    return rc;
}
