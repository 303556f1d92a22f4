/*
 * request: one signed S3 request on a curl easy handle — building the URL,
 * signing with SigV4, feeding the body from memory or a file range, sending
 * the answer to memory or a file at an offset, capturing the response
 * headers, and classifying the outcome (see request.h).
 */
#include "s3/request.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "s3/retry.h"
#include "s3/xml.h"
#include "util/alloc.h"
#include "util/encode.h"
#include "util/log.h"

void s3_request_init(s3_request *r, const char *op, const char *method,
                     const char *bucket, const char *key)
{
    memset(r, 0, sizeof *r);
    r->op = op;
    r->method = method;
    r->bucket = bucket;
    r->key = key;
    r->body_fd = -1;
    r->sink_fd = -1;
}

void s3_request_add_query(s3_request *r, const char *name, const char *value)
{
    if (r->nquery < S3_REQ_MAX_QUERY)
        r->query[r->nquery++] = (s3_kv){ name, value };
    else
        abort();   /* a programming error: the fixed table is sized for every S3 call we make */
}

void s3_request_add_header(s3_request *r, const char *name, const char *value)
{
    if (r->nheaders < S3_REQ_MAX_HEADERS)
        r->headers[r->nheaders++] = (s3_kv){ name, value };
    else
        abort();
}

void s3_base64(const unsigned char *in, size_t n, char *out, size_t cap)
{
    if (cap < 4 * ((n + 2) / 3) + 1) {
        if (cap)
            out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

void *s3_transfer_calloc(size_t n, size_t size, const char *op, const char *bucket,
                         const char *key, s3_error *err)
{
    void *p = n && size <= SIZE_MAX / n ? calloc(n, size) : NULL;
    if (!p)
        s3_error_local(err, op, bucket, key, "out of memory for %zu x %zu bytes of transfer buffers",
                       n, size);
    return p;
}

/* ---- error text ---- */

void s3_error_finish(s3_error *err, const char *op, const char *bucket, const char *key)
{
    sky_buf t = SKY_BUF_INIT;
    sky_buf_printf(&t, "s3 %s", op ? op : "request");
    if (bucket && *bucket)
        sky_buf_printf(&t, " s3://%s/%s", bucket, key ? key : "");
    sky_buf_append_str(&t, ": ");
    if (err->code[0])
        sky_buf_printf(&t, "%s: ", err->code);
    sky_buf_append_str(&t, err->message[0] ? err->message : "failed");
    if (err->request_id[0])
        sky_buf_printf(&t, " (request id %s)", err->request_id);
    if (err->attempts > 1)
        sky_buf_printf(&t, " (after %d attempts)", err->attempts);
    sky_redact_buf(&t);
    snprintf(err->text, sizeof err->text, "%s", sky_buf_cstr(&t));
    sky_buf_free(&t);
}

void s3_error_note(s3_error *err, const char *fmt, ...)
{
    sky_buf t = SKY_BUF_INIT;
    char note[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note, sizeof note, fmt, ap);
    va_end(ap);
    sky_buf_printf(&t, "%s (%s)", err->text, note);
    sky_redact_buf(&t);
    snprintf(err->text, sizeof err->text, "%s", sky_buf_cstr(&t));
    sky_buf_free(&t);
}

void s3_error_local(s3_error *err, const char *op, const char *bucket, const char *key,
                    const char *fmt, ...)
{
    memset(err, 0, sizeof *err);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    s3_error_finish(err, op, bucket, key);
}

int s3_check_target(const char *op, const char *bucket, const char *key, int need_key, s3_error *err)
{
    if (!bucket || !*bucket) {
        s3_error_local(err, op, NULL, NULL, "no bucket name given (key '%s')", key ? key : "");
        return -1;
    }
    if (!need_key)
        return 0;
    if (!key || !*key) {
        s3_error_local(err, op, bucket, "", "an object key is needed, not an empty string");
        return -1;
    }
    size_t n = strlen(key);
    if (n > S3_MAX_KEY_LEN) {
        /* The message names the key's start only: 1 KiB of key helps nobody. */
        char head[81];
        snprintf(head, sizeof head, "%.60s...", key);
        s3_error_local(err, op, bucket, head, "the key is %zu bytes long; S3 keys are at most %d bytes",
                       n, S3_MAX_KEY_LEN);
        return -1;
    }
    return 0;
}

/* ---- curl callbacks ---- */

static size_t read_body(char *dst, size_t size, size_t nitems, void *ud)
{
    s3_request *r = ud;
    size_t want = size * nitems;
    uint64_t left = r->body_len - r->sent;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (r->body) {
        memcpy(dst, r->body + r->sent, want);
    } else {
        ssize_t got = pread(r->body_fd, dst, want, (off_t)(r->body_offset + r->sent));
        if (got <= 0) {
            snprintf(r->local_error, sizeof r->local_error, "cannot read the file being uploaded: %s",
                     got < 0 ? strerror(errno) : "it became shorter during the upload");
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)got;
    }
    r->sent += want;
    s3_progress_add(r->progress, (int64_t)want);
    return want;
}

static long current_status(s3_request *r)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static size_t write_body(char *data, size_t size, size_t nmemb, void *ud)
{
    s3_request *r = ud;
    size_t n = size * nmemb;
    long status = current_status(r);
    if (status < 200 || status >= 300) {
        /* An error document: keep it (bounded) for the message, never in the sink. */
        if (r->errbody.len + n <= S3_ERRBODY_MAX)
            sky_buf_append(&r->errbody, data, n);
        return n;
    }
    if (r->sink_limit && r->received + n > r->sink_limit) {
        snprintf(r->local_error, sizeof r->local_error,
                 "the server sent more than the %llu bytes expected",
                 (unsigned long long)r->sink_limit);
        return 0;
    }
    if (r->sink_fd >= 0) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = pwrite(r->sink_fd, data + off, n - off,
                               (off_t)(r->sink_offset + r->received + off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                snprintf(r->local_error, sizeof r->local_error, "cannot write the download: %s",
                         w < 0 ? strerror(errno) : "no space written");
                return 0;
            }
            off += (size_t)w;
        }
    } else if (r->response) {
        /* An object read into memory is as large as the object: failing
         * to hold it is the request's error, not the host's end. */
        if (sky_buf_try_reserve(r->response, n) != 0) {
            snprintf(r->local_error, sizeof r->local_error,
                     "out of memory holding the answer (%zu bytes received so far)", r->response->len);
            return 0;
        }
        sky_buf_append(r->response, data, n);
    }
    if (r->md5_ctx)
        EVP_DigestUpdate(r->md5_ctx, data, n);
    r->received += n;
    s3_progress_add(r->progress, (int64_t)n);
    return n;
}

/* Copies a header value without surrounding blanks (and quotes when asked). */
static void header_value(char *dst, size_t cap, const char *v, size_t n, int strip_quotes)
{
    while (n && (*v == ' ' || *v == '\t' || (strip_quotes && *v == '"'))) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' ||
                 (strip_quotes && v[n - 1] == '"')))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int header_is(const char *line, size_t namelen, const char *name)
{
    return strlen(name) == namelen && strncasecmp(line, name, namelen) == 0;
}

static size_t read_header(char *line, size_t size, size_t nitems, void *ud)
{
    s3_request *r = ud;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        memset(&r->hdr, 0, sizeof r->hdr);   /* a new response (after a 100 Continue) */
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return n;
    size_t namelen = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vlen = n - namelen - 1;
    s3_response_headers *h = &r->hdr;
    char num[32];
    if (header_is(line, namelen, "etag")) {
        header_value(h->etag, sizeof h->etag, v, vlen, 1);
    } else if (header_is(line, namelen, "x-amz-request-id")) {
        header_value(h->request_id, sizeof h->request_id, v, vlen, 0);
    } else if (header_is(line, namelen, "x-amz-server-side-encryption")) {
        header_value(h->sse, sizeof h->sse, v, vlen, 0);
    } else if (header_is(line, namelen, "x-amz-server-side-encryption-customer-algorithm")) {
        h->sse_customer = 1;
    } else if (header_is(line, namelen, "x-amz-meta-skyrun-part-size")) {
        header_value(h->meta_part_size, sizeof h->meta_part_size, v, vlen, 0);
    } else if (header_is(line, namelen, "x-amz-meta-skyrun-upload")) {
        header_value(h->meta_upload, sizeof h->meta_upload, v, vlen, 0);
    } else if (header_is(line, namelen, "last-modified")) {
        header_value(h->last_modified, sizeof h->last_modified, v, vlen, 0);
    } else if (header_is(line, namelen, "content-length")) {
        header_value(num, sizeof num, v, vlen, 0);
        char *end;
        errno = 0;
        unsigned long long len = strtoull(num, &end, 10);
        if (end != num && *end == '\0' && errno == 0) {
            h->content_length = len;
            h->has_content_length = 1;
        }
    }
    return n;
}

/* ---- starting an attempt ---- */

static int kv_cmp(const void *a, const void *b)
{
    const s3_kv *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static void append_query(sky_buf *url, const s3_request *r)
{
    s3_kv sorted[S3_REQ_MAX_QUERY];
    memcpy(sorted, r->query, r->nquery * sizeof *sorted);
    qsort(sorted, r->nquery, sizeof *sorted, kv_cmp);
    for (size_t i = 0; i < r->nquery; i++) {
        sky_buf_append_byte(url, i ? '&' : '?');
        sky_buf_append_percent(url, sorted[i].name, strlen(sorted[i].name), 0);
        sky_buf_append_byte(url, '=');
        sky_buf_append_percent(url, sorted[i].value, strlen(sorted[i].value), 0);
    }
}

static void add_header_raw(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (!n)
        sky_oom("curl header list");
    *list = n;
}

static void add_header_line(struct curl_slist **list, const char *name, const char *value)
{
    sky_buf line = SKY_BUF_INIT;
    sky_buf_printf(&line, "%s: %s", name, value);
    add_header_raw(list, sky_buf_cstr(&line));
    sky_buf_free(&line);
}

static void payload_hash(s3_request *r)
{
    if (r->payload_hash)
        return;
    sigv4_sha256_hex(r->body ? (const void *)r->body : "", r->body ? (size_t)r->body_len : 0,
                     r->hash_buf);
    r->payload_hash = r->hash_buf;
}

static void configure_method(s3_request *r, CURL *easy)
{
    int has_body = r->body || r->body_fd >= 0;
    if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "DELETE") == 0 && !has_body) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        /* PUT and POST, with or without a body: always an explicit length. */
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(has_body ? r->body_len : 0));
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(easy, CURLOPT_READDATA, r);
        if (strcmp(r->method, "PUT") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, r->method);
    }
}

static void configure_transport(s3_client *c, s3_request *r, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->curl_errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 15L);
    /* A stalled transfer (under 1 byte/s for 60 s) is a timeout, and retried. */
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, c->settings.verify_tls ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, c->settings.verify_tls ? 2L : 0L);
    if (c->settings.ca_bundle && *c->settings.ca_bundle)
        curl_easy_setopt(easy, CURLOPT_CAINFO, c->settings.ca_bundle);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
}

int s3_request_start(s3_client *c, s3_request *r, CURL *easy, s3_error *err)
{
    int rc = -1;
    sky_buf host = SKY_BUF_INIT, path = SKY_BUF_INIT, url = SKY_BUF_INIT, auth = SKY_BUF_INIT;
    s3_kv signed_headers[S3_REQ_MAX_HEADERS + 4];
    size_t nsigned = 0;
    char amz_date[17];

    r->status = 0;
    r->curl_code = 0;
    r->sent = r->received = 0;
    r->local_error[0] = '\0';
    r->curl_errbuf[0] = '\0';
    memset(&r->hdr, 0, sizeof r->hdr);
    sky_buf_free(&r->errbody);
    if (r->response)
        sky_buf_reset(r->response);
    r->easy = easy;
    if (r->want_md5) {
        r->md5_ctx = EVP_MD_CTX_new();
        if (!r->md5_ctx || !EVP_DigestInit_ex(r->md5_ctx, EVP_md5(), NULL))
            sky_oom("digest context");
    }

    payload_hash(r);
    s3_url_host_and_path(&c->endpoint, c->settings.path_style, r->bucket, r->key, &host, &path);
    sky_buf_printf(&url, "%s://%s%s", c->endpoint.scheme, sky_buf_cstr(&host), sky_buf_cstr(&path));
    append_query(&url, r);

    sigv4_amz_date((long long)time(NULL), amz_date);
    signed_headers[nsigned++] = (s3_kv){ "host", sky_buf_cstr(&host) };
    signed_headers[nsigned++] = (s3_kv){ "x-amz-content-sha256", r->payload_hash };
    signed_headers[nsigned++] = (s3_kv){ "x-amz-date", amz_date };
    if (c->settings.session_token && *c->settings.session_token)
        signed_headers[nsigned++] = (s3_kv){ "x-amz-security-token", c->settings.session_token };
    for (size_t i = 0; i < r->nheaders; i++)
        signed_headers[nsigned++] = r->headers[i];

    sigv4_request sreq = { r->method, sky_buf_cstr(&path), r->query, r->nquery,
                           signed_headers, nsigned, r->payload_hash, 0 };
    sigv4_key skey = { c->settings.access_key, c->settings.secret_key,
                       c->settings.session_token && *c->settings.session_token ? c->settings.session_token : NULL,
                       c->settings.region, "s3" };
    if (sigv4_authorization(&sreq, &skey, amz_date, &auth, NULL, NULL) != 0) {
        s3_error_local(err, r->op, r->bucket, r->key, "cannot sign the request (invalid key, region or header)");
        goto done;
    }

    for (size_t i = 0; i < nsigned; i++)
        add_header_line(&r->slist, signed_headers[i].name, signed_headers[i].value);
    add_header_line(&r->slist, "Authorization", sky_buf_cstr(&auth));
    /* No "Expect: 100-continue" round trip per part; curl's defaults otherwise. */
    add_header_raw(&r->slist, "Expect:");
    add_header_raw(&r->slist, "Accept:");

    configure_transport(c, r, easy);
    configure_method(r, easy);
    curl_easy_setopt(easy, CURLOPT_URL, sky_buf_cstr(&url));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->slist);
    rc = 0;
done:
    if (rc != 0 && r->md5_ctx) {
        EVP_MD_CTX_free(r->md5_ctx);
        r->md5_ctx = NULL;
    }
    /* The Authorization value is not a secret (it is a one-time MAC) but is wiped anyway. */
    if (auth.data)
        memset(auth.data, 0, auth.cap);
    sky_buf_free(&auth);
    sky_buf_free(&host);
    sky_buf_free(&path);
    sky_buf_free(&url);
    return rc;
}

void s3_request_end(s3_request *r, CURLcode rc)
{
    r->curl_code = (int)rc;
    if (r->easy)
        r->status = current_status(r);
    if (r->md5_ctx) {
        unsigned len = 0;
        EVP_DigestFinal_ex(r->md5_ctx, r->md5, &len);
        EVP_MD_CTX_free(r->md5_ctx);
        r->md5_ctx = NULL;
    }
    curl_slist_free_all(r->slist);
    r->slist = NULL;
    r->easy = NULL;
}

/* A code and message for answers without an error document (HEAD, proxies). */
static void error_from_status(s3_request *r, s3_error *err)
{
    const char *code, *msg;
    int has_key = r->key && *r->key;
    switch (r->status) {
    case 404:
        code = has_key ? "NoSuchKey" : "NoSuchBucket";
        msg = has_key ? "The specified key does not exist." : "The specified bucket does not exist.";
        break;
    case 403: code = "AccessDenied"; msg = "Access Denied"; break;
    case 301: code = "PermanentRedirect"; msg = "the bucket must be addressed with another endpoint or region"; break;
    case 412: code = "PreconditionFailed"; msg = "the object changed while it was being read"; break;
    case 416: code = "InvalidRange"; msg = "the requested range is not satisfiable"; break;
    case 503: code = "ServiceUnavailable"; msg = "service unavailable"; break;
    default: code = ""; msg = NULL; break;
    }
    snprintf(err->code, sizeof err->code, "%s", code);
    if (msg)
        snprintf(err->message, sizeof err->message, "%s", msg);
    else
        snprintf(err->message, sizeof err->message, "HTTP status %ld", r->status);
}

/* A hint after messages that users cannot act on by themselves. */
static void add_hint(s3_error *err)
{
    const char *hint = NULL;
    if (strcmp(err->code, "SignatureDoesNotMatch") == 0)
        hint = " (check the secret key and the region)";
    else if (strcmp(err->code, "InvalidAccessKeyId") == 0)
        hint = " (check the access key)";
    else if (strcmp(err->code, "PreconditionFailed") == 0 && strstr(err->message, "changed") == NULL)
        hint = " (the object changed while it was being read)";
    if (hint && strlen(err->message) + strlen(hint) < sizeof err->message)
        strcat(err->message, hint);
}

int s3_request_outcome(s3_client *c, s3_request *r, s3_error *err)
{
    int verdict;
    memset(err, 0, sizeof *err);
    err->status = r->status;
    err->curl_code = r->curl_code;
    if (r->local_error[0]) {
        snprintf(err->message, sizeof err->message, "%s", r->local_error);
        verdict = -1;
    } else if (r->curl_code != CURLE_OK) {
        const char *detail = r->curl_errbuf[0] ? r->curl_errbuf : curl_easy_strerror((CURLcode)r->curl_code);
        const char *hint = "";
        if (r->curl_code == CURLE_PEER_FAILED_VERIFICATION)
            hint = " (a private CA? give its PEM file as ca_bundle or AWS_CA_BUNDLE)";
        else if (r->curl_code == CURLE_SSL_CACERT_BADFILE)
            hint = " (check ca_bundle / AWS_CA_BUNDLE: a readable PEM file)";
        snprintf(err->message, sizeof err->message, "cannot reach %s: %s%s",
                 c->settings.endpoint ? c->settings.endpoint : "the endpoint", detail, hint);
        verdict = s3_retry_is_retryable(r->curl_code, 0, NULL) ? 1 : -1;
    } else if (r->status < 200 || r->status >= 300) {
        s3_error_doc doc;
        if (r->errbody.len && s3_xml_parse_error((const char *)r->errbody.data, r->errbody.len, &doc) == 0) {
            snprintf(err->code, sizeof err->code, "%s", doc.code);
            snprintf(err->message, sizeof err->message, "%s", doc.message[0] ? doc.message : doc.code);
            snprintf(err->request_id, sizeof err->request_id, "%s", doc.request_id);
        } else {
            error_from_status(r, err);
        }
        if (!err->request_id[0])
            snprintf(err->request_id, sizeof err->request_id, "%s", r->hdr.request_id);
        add_hint(err);
        verdict = s3_retry_is_retryable(0, r->status, err->code) ? 1 : -1;
    } else {
        verdict = 0;
    }
    sky_buf_free(&r->errbody);
    if (verdict != 0)
        s3_error_finish(err, r->op, r->bucket, r->key);
    return verdict;
}
