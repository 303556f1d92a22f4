/* multipart: initiate, complete, abort and ETag arithmetic (see multipart.h). */
#include "s3/multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/request.h"
#include "s3/xml.h"
#include "util/alloc.h"
#include "util/encode.h"
#include "util/log.h"

uint64_t s3_multipart_part_size(uint64_t size, uint64_t wanted)
{
    const uint64_t mib = 1 << 20;
    uint64_t ps = wanted < S3_MIN_PART_SIZE ? S3_MIN_PART_SIZE : wanted;
    if (ps > S3_MAX_PART_SIZE)
        ps = S3_MAX_PART_SIZE;
    if (size / ps >= S3_MAX_PARTS) {
        uint64_t need = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
        ps = (need + mib - 1) / mib * mib;
    }
    return ps;
}

uint64_t s3_multipart_part_count(uint64_t size, uint64_t part_size)
{
    if (size == 0)
        return 1;
    return (size + part_size - 1) / part_size;
}

void s3_multipart_etag(const unsigned char (*part_md5)[16], size_t n, char *out)
{
    unsigned char digest[16];
    char hex[33];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 0;
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL))
        sky_oom("digest context");
    for (size_t i = 0; i < n; i++)
        EVP_DigestUpdate(ctx, part_md5[i], 16);
    EVP_DigestFinal_ex(ctx, digest, &len);
    EVP_MD_CTX_free(ctx);
    sky_hex(digest, 16, hex);
    snprintf(out, 64, "%s-%zu", hex, n);
}

int s3_etag_multipart_parts(const char *etag, uint64_t *parts)
{
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)etag[i]))
            return 0;
    if (etag[32] != '-' || !isdigit((unsigned char)etag[33]))
        return 0;
    char *end;
    unsigned long long n = strtoull(etag + 33, &end, 10);
    if (*end || n == 0 || n > S3_MAX_PARTS)
        return 0;
    *parts = n;
    return 1;
}

int s3_multipart_initiate(s3_client *c, const char *bucket, const char *key,
                          const char *content_type, uint64_t part_size, const char *nonce,
                          char *upload_id, size_t cap, s3_error *err)
{
    sky_buf resp = SKY_BUF_INIT;
    char ps[24];
    s3_request r;
    int rc = -1;
    snprintf(ps, sizeof ps, "%llu", (unsigned long long)part_size);
    s3_request_init(&r, "upload", "POST", bucket, key);
    s3_request_add_query(&r, "uploads", "");
    s3_request_add_header(&r, "x-amz-meta-skyrun-part-size", ps);
    if (nonce)
        s3_request_add_header(&r, "x-amz-meta-skyrun-upload", nonce);
    if (content_type)
        s3_request_add_header(&r, "content-type", content_type);
    r.response = &resp;
    if (s3_request_perform(c, &r, err) != 0)
        goto done;
    if (s3_xml_parse_upload_id((const char *)resp.data, resp.len, upload_id, cap) != 0) {
        s3_error_local(err, "upload", bucket, key, "malformed InitiateMultipartUpload response");
        goto done;
    }
    rc = 0;
done:
    sky_buf_free(&resp);
    return rc;
}

/* CompleteMultipartUpload may answer 200 and then an <Error> in the body
 * (the server worked on it for a while); InternalError there is retried. */
typedef struct complete_call {
    s3_request *proto;     /* the request described by s3_multipart_complete */
    sky_buf *resp;
    char *etag_out;
} complete_call;

static int complete_prepare(void *ud, size_t i, s3_request *req, s3_error *err)
{
    *req = *((complete_call *)ud)->proto;
    return 0;
}

static int complete_finish(void *ud, size_t i, s3_request *req, s3_error *err)
{
    complete_call *call = ud;
    s3_error_doc doc;
    int res = s3_xml_parse_etag_result((const char *)call->resp->data, call->resp->len,
                                       "CompleteMultipartUploadResult", call->etag_out, 80, &doc);
    if (res == 0)
        return 0;
    memset(err, 0, sizeof *err);
    if (res == 1) {
        err->status = req->status;
        snprintf(err->code, sizeof err->code, "%s", doc.code);
        snprintf(err->message, sizeof err->message, "%s", doc.message);
        snprintf(err->request_id, sizeof err->request_id, "%s", doc.request_id);
    } else {
        snprintf(err->message, sizeof err->message, "malformed CompleteMultipartUpload response");
    }
    s3_error_finish(err, req->op, req->bucket, req->key);
    return res == 1 && strcmp(doc.code, "InternalError") == 0 ? 1 : -1;
}

int s3_multipart_complete(s3_client *c, const char *bucket, const char *key,
                          const char *upload_id, char (*part_etags)[80], size_t n,
                          char *etag_out, s3_error *err)
{
    sky_buf body = SKY_BUF_INIT, resp = SKY_BUF_INIT;
    s3_request r;
    sky_buf_append_str(&body, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < n; i++)
        sky_buf_printf(&body, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
                       i + 1, part_etags[i]);
    sky_buf_append_str(&body, "</CompleteMultipartUpload>");
    s3_request_init(&r, "upload", "POST", bucket, key);
    s3_request_add_query(&r, "uploadId", upload_id);
    s3_request_add_header(&r, "content-type", "application/xml");
    r.body = body.data;
    r.body_len = body.len;
    r.response = &resp;
    complete_call call = { &r, &resp, etag_out };
    s3_batch b = { c, 1, 1, complete_prepare, complete_finish, &call,
                   "upload", bucket, key, 0, 0 };
    int rc = s3_batch_run(&b, err);
    sky_buf_free(&body);
    sky_buf_free(&resp);
    return rc;
}

void s3_multipart_abort(s3_client *c, const char *bucket, const char *key, const char *upload_id)
{
    s3_request r;
    s3_error err;
    s3_request_init(&r, "abort upload", "DELETE", bucket, key);
    s3_request_add_query(&r, "uploadId", upload_id);
    if (s3_request_perform_cleanup(c, &r, &err) != 0 && err.status != 404)
        sky_log(SKY_LOG_WARN, "%s (the incomplete upload %s may need aborting by hand)", err.text, upload_id);
}

void s3_multipart_remove_if_ours(s3_client *c, const char *bucket, const char *key, const char *nonce)
{
    s3_request r;
    s3_error err;
    s3_request_init(&r, "upload cleanup", "HEAD", bucket, key);
    if (s3_request_perform_cleanup(c, &r, &err) != 0) {
        if (err.status != 404)
            sky_log(SKY_LOG_WARN, "%s (cannot tell whether the failed upload created s3://%s/%s)",
                    err.text, bucket, key);
        return;
    }
    if (strcmp(r.hdr.meta_upload, nonce) != 0)
        return;   /* an object that is not this upload's: left alone */
    s3_request_init(&r, "upload cleanup", "DELETE", bucket, key);
    if (s3_request_perform_cleanup(c, &r, &err) != 0)
        sky_log(SKY_LOG_WARN, "%s (the failed upload's object s3://%s/%s may need deleting by hand)",
                err.text, bucket, key);
}
