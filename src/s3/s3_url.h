/*
 * s3_url: the two kinds of address the S3 client handles — `s3://bucket/key`
 * as users write it, and the HTTP URL of a request built from the endpoint,
 * the addressing style (path or virtual-hosted), bucket, key and query.
 */
#ifndef SKY_S3_URL_H
#define SKY_S3_URL_H

#include <stddef.h>
#include "util/buf.h"

/* Splits "s3://bucket/key/with/slashes" into bucket and key (malloc'd; key is
 * "" when absent). Returns 0, or -1 with a message in err naming the problem. */
int s3_url_parse(const char *url, char **bucket, char **key, char *err, size_t errlen);

/* 1 when s starts with "s3://". */
int s3_url_is_s3(const char *s);

/* The parts of an endpoint such as "https://host:9000/base". */
typedef struct s3_endpoint {
    char scheme[8];      /* "http" or "https" */
    char host[256];      /* host, with ":port" when one was given */
    char base_path[256]; /* "" or "/base" (no trailing slash) */
} s3_endpoint;

/* Parses an endpoint URL; a bare host gets https. Returns 0 or -1 with err. */
int s3_endpoint_parse(const char *endpoint, s3_endpoint *out, char *err, size_t errlen);

/* Appends to host the value of the Host header of a request for bucket
 * (NULL for service-level requests) and to path the encoded path as sent
 * and signed. Virtual-hosted style puts the bucket in the host name. */
void s3_url_host_and_path(const s3_endpoint *ep, int path_style, const char *bucket,
                          const char *key, sky_buf *host, sky_buf *path);

#endif
