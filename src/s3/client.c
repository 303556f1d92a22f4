/*
 * client: the s3_client (settings, curl multi handle, easy-handle pool) and
 * the one-request operations — list, put/get of memory, head, delete (one
 * key or a whole prefix, batched), copy (one key or a prefix), presign,
 * buckets. File transfers live in transfer_upload.c and
 * transfer_download.c, where they land in target.c.
 */
#include "s3/request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "s3/xml.h"
#include "util/alloc.h"
#include "util/encode.h"
#include "util/log.h"
#include "util/sigpipe.h"

/* ---- settings and lifetime ---- */

static int curl_ready(void)
{
    static int done, ok;
    if (!done) {
        ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
        done = 1;
    }
    return ok;
}

s3_client *s3_client_new(const s3_settings *settings, const s3_client_options *opts, s3_error *err)
{
    s3_client_options o = S3_CLIENT_OPTIONS_INIT;
    if (opts)
        o = *opts;
    memset(err, 0, sizeof *err);
    if (!settings || !settings->access_key || !*settings->access_key ||
        !settings->secret_key || !*settings->secret_key) {
        s3_error_local(err, "storage", NULL, NULL, "no credentials (access_key and secret_key)");
        return NULL;
    }
    if (!settings->endpoint || !*settings->endpoint) {
        s3_error_local(err, "storage", NULL, NULL, "no endpoint");
        return NULL;
    }
    if (!curl_ready()) {
        s3_error_local(err, "storage", NULL, NULL, "libcurl failed to initialise");
        return NULL;
    }
    s3_client *c = sky_xcalloc(1, sizeof *c);
    char perr[256];
    if (s3_endpoint_parse(settings->endpoint, &c->endpoint, perr, sizeof perr) != 0) {
        s3_error_local(err, "storage", NULL, NULL, "%s", perr);
        free(c);
        return NULL;
    }
    s3_settings_copy(&c->settings, settings);
    if (!c->settings.region || !*c->settings.region) {
        free(c->settings.region);
        c->settings.region = sky_xstrdup(S3_DEFAULT_REGION);
    }
    c->part_size = o.part_size ? o.part_size : S3_DEFAULT_PART_SIZE;
    if (c->part_size < S3_MIN_PART_SIZE)
        c->part_size = S3_MIN_PART_SIZE;
    c->parallel = o.parallel > 0 ? (o.parallel > S3_MAX_PARALLEL ? S3_MAX_PARALLEL : o.parallel)
                                 : S3_DEFAULT_PARALLEL;
    int retries = o.retries < 0 ? S3_DEFAULT_RETRIES : o.retries;
    c->attempts = 1 + (retries > S3_MAX_RETRIES ? S3_MAX_RETRIES : retries);
    c->progress = s3_progress_wanted(o.progress);
    c->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
    c->multi = curl_multi_init();
    if (!c->multi)
        sky_oom("curl multi handle");
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)(c->parallel * 2 + 4));
    return c;
}

void s3_client_free(s3_client *c)
{
    if (!c)
        return;
    /* Closing the cached connections sends TLS close_notify alerts, maybe to
     * servers that reset them: SIGPIPE held as in s3_batch_run (batch.c). */
    sky_sigpipe_guard guard;
    sky_sigpipe_hold(&guard);
    for (size_t i = 0; i < c->nidle; i++)
        curl_easy_cleanup(c->idle[i]);
    free(c->idle);
    curl_multi_cleanup(c->multi);
    sky_sigpipe_release(&guard);
    s3_settings_free(&c->settings);
    free(c);
}

const s3_settings *s3_client_settings(const s3_client *c) { return &c->settings; }

/* ---- helpers shared with the transfers ---- */

int s3_etag_is_md5(const s3_response_headers *h)
{
    if (h->sse_customer || strcmp(h->sse, "aws:kms") == 0 || strcmp(h->sse, "aws:kms:dsse") == 0)
        return 0;
    if (strlen(h->etag) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)h->etag[i]))
            return 0;
    return 1;
}

void s3_content_md5(const void *data, size_t n, unsigned char digest[16], char b64[25])
{
    unsigned len = 0;
    EVP_Digest(data, n, digest, &len, EVP_md5(), NULL);
    s3_base64(digest, 16, b64, 25);
}

/* ---- listing ---- */

static int list_page(s3_client *c, const char *bucket, const char *prefix, int recursive,
                     const char *token, s3_list_page *page, s3_error *err)
{
    sky_buf body = SKY_BUF_INIT;
    s3_request r;
    int rc = -1;
    s3_request_init(&r, "ls", "GET", bucket, prefix);
    r.key = NULL;   /* the prefix goes in the query, the request is on the bucket */
    s3_request_add_query(&r, "list-type", "2");
    s3_request_add_query(&r, "prefix", prefix ? prefix : "");
    if (!recursive)
        s3_request_add_query(&r, "delimiter", "/");
    if (token)
        s3_request_add_query(&r, "continuation-token", token);
    r.response = &body;
    if (s3_request_perform(c, &r, err) != 0) {
        s3_error_finish(err, "ls", bucket, prefix);
        goto done;
    }
    char perr[128];
    if (s3_xml_parse_list((const char *)body.data, body.len, page, perr, sizeof perr) != 0) {
        s3_error_local(err, "ls", bucket, prefix, "%s", perr);
        goto done;
    }
    rc = 0;
done:
    sky_buf_free(&body);
    return rc;
}

static int emit_page(const s3_list_page *page, s3_list_fn fn, void *ud)
{
    for (size_t i = 0; i < page->nprefixes; i++) {
        s3_object_info o = { page->prefixes[i], 0, "", 0, 1 };
        if (fn(ud, &o))
            return 1;
    }
    for (size_t i = 0; i < page->nentries; i++) {
        const s3_list_entry *e = &page->entries[i];
        s3_object_info o = { e->key, e->size, e->etag, e->mtime, 0 };
        if (fn(ud, &o))
            return 1;
    }
    return 0;
}

int s3_list(s3_client *c, const char *bucket, const char *prefix, int recursive,
            s3_list_fn fn, void *ud, s3_error *err)
{
    char *token = NULL;
    int rc = -1;
    if (s3_check_target("ls", bucket, prefix, 0, err) != 0)
        return -1;
    for (;;) {
        s3_list_page page = { 0 };
        if (list_page(c, bucket, prefix, recursive, token, &page, err) != 0)
            goto done;
        int stop = emit_page(&page, fn, ud);
        if (stop || !page.truncated) {
            s3_list_page_free(&page);
            break;
        }
        if (token && strcmp(token, page.next_token) == 0) {
            s3_list_page_free(&page);
            s3_error_local(err, "ls", bucket, prefix, "the server repeated a continuation token");
            goto done;
        }
        free(token);
        token = sky_xstrdup(page.next_token);
        s3_list_page_free(&page);
    }
    rc = 0;
done:
    free(token);
    return rc;
}

/* ---- objects in memory ---- */

int s3_put_object(s3_client *c, const char *bucket, const char *key, const void *data,
                  size_t len, const char *content_type, s3_error *err)
{
    unsigned char digest[16];
    char md5_b64[25], md5_hex[33];
    s3_request r;
    if (s3_check_target("put", bucket, key, 1, err) != 0)
        return -1;
    s3_content_md5(data ? data : "", len, digest, md5_b64);
    sky_hex(digest, 16, md5_hex);
    s3_request_init(&r, "put", "PUT", bucket, key);
    r.body = data ? data : (const uint8_t *)"";
    r.body_len = len;
    s3_request_add_header(&r, "content-md5", md5_b64);
    if (content_type)
        s3_request_add_header(&r, "content-type", content_type);
    if (s3_request_perform(c, &r, err) != 0)
        return -1;
    if (s3_etag_is_md5(&r.hdr) && strcasecmp(r.hdr.etag, md5_hex) != 0) {
        s3_error_local(err, "put", bucket, key, "the stored object's ETag %s is not the MD5 %s of the data sent",
                       r.hdr.etag, md5_hex);
        s3_error cleanup;
        s3_delete_object(c, bucket, key, &cleanup);   /* never leave an object we cannot vouch for */
        return -1;
    }
    return 0;
}

int s3_get_object(s3_client *c, const char *bucket, const char *key, sky_buf *out, s3_error *err)
{
    s3_request r;
    if (s3_check_target("get", bucket, key, 1, err) != 0)
        return -1;
    s3_request_init(&r, "get", "GET", bucket, key);
    r.response = out;
    r.want_md5 = 1;
    if (s3_request_perform(c, &r, err) != 0)
        return -1;
    if (r.hdr.has_content_length && r.hdr.content_length != out->len) {
        s3_error_local(err, "get", bucket, key, "received %zu bytes of %llu", out->len,
                       (unsigned long long)r.hdr.content_length);
        return -1;
    }
    char hex[33];
    sky_hex(r.md5, 16, hex);
    if (s3_etag_is_md5(&r.hdr) && strcasecmp(r.hdr.etag, hex) != 0) {
        s3_error_local(err, "get", bucket, key, "the data received does not match the object's ETag (MD5)");
        return -1;
    }
    return 0;
}

/* After a 404 on a key: is it the key or the whole bucket that is missing? */
void s3_refine_not_found(s3_client *c, const char *op, const char *bucket, const char *key,
                             s3_error *err)
{
    s3_request r;
    s3_error berr;
    s3_request_init(&r, op, "HEAD", bucket, NULL);
    if (s3_request_perform(c, &r, &berr) != 0 && berr.status == 404) {
        snprintf(err->code, sizeof err->code, "NoSuchBucket");
        snprintf(err->message, sizeof err->message, "The specified bucket does not exist.");
        s3_error_finish(err, op, bucket, key);
    }
}

int s3_head_object(s3_client *c, const char *bucket, const char *key,
                   s3_object_info *info, s3_error *err)
{
    s3_request r;
    if (s3_check_target("head", bucket, key, 1, err) != 0)
        return -1;
    s3_request_init(&r, "head", "HEAD", bucket, key);
    if (s3_request_perform(c, &r, err) != 0) {
        if (err->status != 404)
            return -1;
        s3_refine_not_found(c, "head", bucket, key, err);
        return 1;
    }
    if (info) {
        snprintf(c->head_key, sizeof c->head_key, "%s", key);
        snprintf(c->head_etag, sizeof c->head_etag, "%s", r.hdr.etag);
        info->key = c->head_key;
        info->etag = c->head_etag;
        info->size = r.hdr.content_length;
        info->mtime = 0;
        if (r.hdr.last_modified[0]) {
            struct tm tm = { 0 };
            if (strptime(r.hdr.last_modified, "%a, %d %b %Y %H:%M:%S", &tm))
                info->mtime = (long long)timegm(&tm);
        }
        info->is_prefix = 0;
    }
    return 0;
}

int s3_delete_object(s3_client *c, const char *bucket, const char *key, s3_error *err)
{
    s3_request r;
    if (s3_check_target("rm", bucket, key, 1, err) != 0)
        return -1;
    s3_request_init(&r, "rm", "DELETE", bucket, key);
    return s3_request_perform(c, &r, err);
}

/* ---- deleting a prefix: DeleteObjects, 1000 keys a request ---- */

typedef struct delete_batch {
    s3_client *c;
    const char *bucket, *prefix;
    sky_buf xml;
    size_t pending, deleted;
    s3_error *err;
    int failed;
} delete_batch;

static void xml_escape(sky_buf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': sky_buf_append_str(out, "&amp;"); break;
        case '<': sky_buf_append_str(out, "&lt;"); break;
        case '>': sky_buf_append_str(out, "&gt;"); break;
        case '"': sky_buf_append_str(out, "&quot;"); break;
        case '\'': sky_buf_append_str(out, "&apos;"); break;
        default: sky_buf_append_byte(out, (uint8_t)*s); break;
        }
    }
}

static int delete_flush(delete_batch *d)
{
    if (d->pending == 0)
        return 0;
    sky_buf_append_str(&d->xml, "</Delete>");
    unsigned char digest[16];
    char md5_b64[25];
    sky_buf resp = SKY_BUF_INIT;
    s3_request r;
    int rc = -1;
    s3_content_md5(d->xml.data, d->xml.len, digest, md5_b64);
    s3_request_init(&r, "rm", "POST", d->bucket, NULL);
    s3_request_add_query(&r, "delete", "");
    s3_request_add_header(&r, "content-md5", md5_b64);
    s3_request_add_header(&r, "content-type", "application/xml");
    r.body = d->xml.data;
    r.body_len = d->xml.len;
    r.response = &resp;
    if (s3_request_perform(d->c, &r, d->err) != 0) {
        s3_error_finish(d->err, "rm", d->bucket, d->prefix);
        goto done;
    }
    s3_delete_result res;
    if (s3_xml_parse_delete_result((const char *)resp.data, resp.len, &res) != 0) {
        s3_error_local(d->err, "rm", d->bucket, d->prefix, "malformed DeleteObjects response");
        goto done;
    }
    if (res.errors) {
        memset(d->err, 0, sizeof *d->err);
        snprintf(d->err->code, sizeof d->err->code, "%s", res.first_code);
        snprintf(d->err->message, sizeof d->err->message, "%s (%zu keys could not be deleted)",
                 res.first_message[0] ? res.first_message : "delete failed", res.errors);
        s3_error_finish(d->err, "rm", d->bucket, res.first_key);
        goto done;
    }
    d->deleted += d->pending;
    rc = 0;
done:
    sky_buf_free(&resp);
    sky_buf_reset(&d->xml);
    d->pending = 0;
    return rc;
}

static int delete_collect(void *ud, const s3_object_info *o)
{
    delete_batch *d = ud;
    if (d->pending == 0)
        sky_buf_append_str(&d->xml, "<Delete><Quiet>true</Quiet>");
    sky_buf_append_str(&d->xml, "<Object><Key>");
    xml_escape(&d->xml, o->key);
    sky_buf_append_str(&d->xml, "</Key></Object>");
    if (++d->pending == 1000 && delete_flush(d) != 0) {
        d->failed = 1;
        return 1;
    }
    return 0;
}

int s3_delete_prefix(s3_client *c, const char *bucket, const char *prefix,
                     size_t *deleted, s3_error *err)
{
    delete_batch d = { c, bucket, prefix, SKY_BUF_INIT, 0, 0, err, 0 };
    int rc = -1;
    if (deleted)
        *deleted = 0;
    if (s3_check_target("rm", bucket, prefix, 0, err) != 0)
        return -1;
    if (s3_list(c, bucket, prefix, 1, delete_collect, &d, err) != 0 || d.failed)
        goto done;
    if (delete_flush(&d) != 0)
        goto done;
    rc = 0;
done:
    if (deleted)
        *deleted = d.deleted;
    sky_buf_free(&d.xml);
    return rc;
}

int s3_delete_keys(s3_client *c, const char *bucket, const char *const *keys, size_t n,
                   size_t *deleted, s3_error *err)
{
    delete_batch d = { c, bucket, "", SKY_BUF_INIT, 0, 0, err, 0 };
    int rc = -1;
    if (s3_check_target("rm", bucket, NULL, 0, err) != 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        s3_object_info o = { .key = keys[i] };
        if (delete_collect(&d, &o) != 0)
            goto done;
    }
    if (delete_flush(&d) != 0)
        goto done;
    rc = 0;
done:
    if (deleted)
        *deleted = d.deleted;
    sky_buf_free(&d.xml);
    return rc;
}

/* ---- copy, presign, buckets ---- */

void s3_copy_request_init(s3_request *r, const char *src_bucket, const char *src_key,
                          const char *dst_bucket, const char *dst_key, sky_buf *source, sky_buf *resp)
{
    sky_buf_append_byte(source, '/');
    sky_buf_append_percent(source, src_bucket, strlen(src_bucket), 0);
    sky_buf_append_byte(source, '/');
    sky_buf_append_percent(source, src_key, strlen(src_key), 1);
    s3_request_init(r, "copy", "PUT", dst_bucket, dst_key);
    s3_request_add_header(r, "x-amz-copy-source", sky_buf_cstr(source));
    r->response = resp;
}

int s3_copy_result(const sky_buf *resp, const char *dst_bucket, const char *dst_key, s3_error *err)
{
    char etag[80];
    s3_error_doc doc;
    int res = s3_xml_parse_etag_result((const char *)resp->data, resp->len, "CopyObjectResult",
                                       etag, sizeof etag, &doc);
    if (res == 1) {
        /* S3 may answer 200 and still fail the copy. */
        memset(err, 0, sizeof *err);
        snprintf(err->code, sizeof err->code, "%s", doc.code);
        snprintf(err->message, sizeof err->message, "%s", doc.message);
        snprintf(err->request_id, sizeof err->request_id, "%s", doc.request_id);
        s3_error_finish(err, "copy", dst_bucket, dst_key);
        return -1;
    }
    if (res != 0) {
        s3_error_local(err, "copy", dst_bucket, dst_key, "malformed CopyObject response");
        return -1;
    }
    return 0;
}

int s3_copy_object(s3_client *c, const char *src_bucket, const char *src_key,
                   const char *dst_bucket, const char *dst_key, s3_error *err)
{
    sky_buf source = SKY_BUF_INIT, resp = SKY_BUF_INIT;
    s3_request r;
    int rc = -1;
    if (s3_check_target("copy", src_bucket, src_key, 1, err) != 0 ||
        s3_check_target("copy", dst_bucket, dst_key, 1, err) != 0)
        return -1;
    s3_copy_request_init(&r, src_bucket, src_key, dst_bucket, dst_key, &source, &resp);
    if (s3_request_perform(c, &r, err) != 0) {
        /* The failure may be the source's: name both. */
        char from[1200];
        snprintf(from, sizeof from, "%s (from s3://%s/%s)", r.key, src_bucket, src_key);
        s3_error_finish(err, "copy", dst_bucket, from);
        goto done;
    }
    rc = s3_copy_result(&resp, dst_bucket, dst_key, err);
done:
    sky_buf_free(&source);
    sky_buf_free(&resp);
    return rc;
}

typedef struct copy_all {
    s3_client *c;
    const char *src_bucket, *src_prefix, *dst_bucket, *dst_prefix;
    size_t count;
    s3_error *err;
    int failed;
} copy_all;

static int copy_one(void *ud, const s3_object_info *o)
{
    copy_all *ca = ud;
    sky_buf dst = SKY_BUF_INIT;
    sky_buf_printf(&dst, "%s%s", ca->dst_prefix, o->key + strlen(ca->src_prefix));
    if (s3_copy_object(ca->c, ca->src_bucket, o->key, ca->dst_bucket, sky_buf_cstr(&dst), ca->err) != 0)
        ca->failed = 1;
    else
        ca->count++;
    sky_buf_free(&dst);
    return ca->failed;
}

int s3_copy_prefix(s3_client *c, const char *src_bucket, const char *src_prefix,
                   const char *dst_bucket, const char *dst_prefix, size_t *count, s3_error *err)
{
    copy_all ca = { c, src_bucket, src_prefix ? src_prefix : "", dst_bucket,
                    dst_prefix ? dst_prefix : "", 0, err, 0 };
    int rc = s3_list(c, src_bucket, ca.src_prefix, 1, copy_one, &ca, err) == 0 && !ca.failed ? 0 : -1;
    if (rc != 0 && ca.count > 0)
        /* Copies made are complete objects and stay, as with folder uploads. */
        s3_error_note(err, "%zu object%s copied before the failure %s kept", ca.count,
                      ca.count == 1 ? "" : "s", ca.count == 1 ? "is" : "are");
    if (count)
        *count = ca.count;
    return rc;
}

int s3_presign(s3_client *c, const char *bucket, const char *key, const char *method,
               unsigned expires, sky_buf *url, s3_error *err)
{
    sky_buf host = SKY_BUF_INIT, path = SKY_BUF_INIT, query = SKY_BUF_INIT;
    char amz_date[17];
    int rc = -1;
    if (s3_check_target("presign", bucket, key, 1, err) != 0)
        goto done;
    if (expires < 1 || expires > S3_PRESIGN_MAX_EXPIRES) {
        s3_error_local(err, "presign", bucket, key, "expires must be 1 to %d seconds, not %u",
                       S3_PRESIGN_MAX_EXPIRES, expires);
        goto done;
    }
    if (!method || (strcmp(method, "GET") && strcmp(method, "PUT") && strcmp(method, "HEAD") &&
                    strcmp(method, "DELETE"))) {
        s3_error_local(err, "presign", bucket, key, "method must be GET, PUT, HEAD or DELETE");
        goto done;
    }
    s3_url_host_and_path(&c->endpoint, c->settings.path_style, bucket, key, &host, &path);
    s3_kv headers[1] = { { "host", sky_buf_cstr(&host) } };
    sigv4_request req = { method, sky_buf_cstr(&path), NULL, 0, headers, 1, "UNSIGNED-PAYLOAD", 0 };
    sigv4_key skey = { c->settings.access_key, c->settings.secret_key,
                       c->settings.session_token && *c->settings.session_token ? c->settings.session_token : NULL,
                       c->settings.region, "s3" };
    sigv4_amz_date((long long)time(NULL), amz_date);
    if (sigv4_presign_query(&req, &skey, amz_date, expires, &query, NULL, NULL) != 0) {
        s3_error_local(err, "presign", bucket, key, "cannot sign the URL");
        goto done;
    }
    sky_buf_printf(url, "%s://%s%s?%s", c->endpoint.scheme, sky_buf_cstr(&host),
                   sky_buf_cstr(&path), sky_buf_cstr(&query));
    rc = 0;
done:
    sky_buf_free(&host);
    sky_buf_free(&path);
    sky_buf_free(&query);
    return rc;
}

int s3_create_bucket(s3_client *c, const char *bucket, s3_error *err)
{
    sky_buf body = SKY_BUF_INIT;
    s3_request r;
    if (s3_check_target("mb", bucket, NULL, 0, err) != 0)
        return -1;
    s3_request_init(&r, "mb", "PUT", bucket, NULL);
    /* Outside us-east-1, AWS wants the region stated. */
    if (strcmp(c->settings.region, "us-east-1") != 0) {
        sky_buf_printf(&body, "<CreateBucketConfiguration><LocationConstraint>%s"
                              "</LocationConstraint></CreateBucketConfiguration>", c->settings.region);
        r.body = body.data;
        r.body_len = body.len;
    }
    int rc = s3_request_perform(c, &r, err);
    sky_buf_free(&body);
    return rc;
}

int s3_delete_bucket(s3_client *c, const char *bucket, s3_error *err)
{
    s3_request r;
    if (s3_check_target("rb", bucket, NULL, 0, err) != 0)
        return -1;
    s3_request_init(&r, "rb", "DELETE", bucket, NULL);
    return s3_request_perform(c, &r, err);
}
