/* s3_url: s3:// URLs and request URLs (see s3_url.h). */
#include "s3/s3_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/encode.h"

int s3_url_is_s3(const char *s) { return s && strncmp(s, "s3://", 5) == 0; }

int s3_url_parse(const char *url, char **bucket, char **key, char *err, size_t errlen)
{
    *bucket = *key = NULL;
    if (!s3_url_is_s3(url)) {
        snprintf(err, errlen, "'%s' is not an s3:// URL (expected s3://bucket/key)", url ? url : "");
        return -1;
    }
    const char *b = url + 5;
    const char *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen == 0) {
        snprintf(err, errlen, "'%s' has no bucket name (expected s3://bucket/key)", url);
        return -1;
    }
    *bucket = sky_xstrndup(b, blen);
    *key = sky_xstrdup(slash ? slash + 1 : "");
    return 0;
}

int s3_endpoint_parse(const char *endpoint, s3_endpoint *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!endpoint || !*endpoint) {
        snprintf(err, errlen, "no endpoint");
        return -1;
    }
    const char *rest = endpoint;
    if (strncmp(endpoint, "http://", 7) == 0) {
        strcpy(out->scheme, "http");
        rest += 7;
    } else if (strncmp(endpoint, "https://", 8) == 0) {
        strcpy(out->scheme, "https");
        rest += 8;
    } else if (strstr(endpoint, "://")) {
        snprintf(err, errlen, "endpoint '%s': only http:// and https:// are supported", endpoint);
        return -1;
    } else {
        strcpy(out->scheme, "https");
    }
    const char *slash = strchr(rest, '/');
    size_t hlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hlen == 0 || hlen >= sizeof out->host) {
        snprintf(err, errlen, "endpoint '%s' has no valid host", endpoint);
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char ch = (unsigned char)rest[i];
        if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']' || ch == '_')) {
            snprintf(err, errlen, "endpoint '%s': invalid character '%c' in host", endpoint, ch);
            return -1;
        }
    }
    memcpy(out->host, rest, hlen);
    if (slash) {
        size_t plen = strlen(slash);
        while (plen > 0 && slash[plen - 1] == '/')
            plen--;
        if (plen >= sizeof out->base_path) {
            snprintf(err, errlen, "endpoint '%s': path too long", endpoint);
            return -1;
        }
        memcpy(out->base_path, slash, plen);
    }
    return 0;
}

void s3_url_host_and_path(const s3_endpoint *ep, int path_style, const char *bucket,
                          const char *key, sky_buf *host, sky_buf *path)
{
    int has_bucket = bucket && *bucket;
    if (has_bucket && !path_style) {
        sky_buf_append_str(host, bucket);
        sky_buf_append_byte(host, '.');
    }
    sky_buf_append_str(host, ep->host);
    sky_buf_append_str(path, ep->base_path);
    sky_buf_append_byte(path, '/');
    if (has_bucket && path_style) {
        sky_buf_append_percent(path, bucket, strlen(bucket), 0);
        if (key && *key)
            sky_buf_append_byte(path, '/');
    }
    if (key && *key)
        sky_buf_append_percent(path, key, strlen(key), 1);
}
