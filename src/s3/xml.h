/*
 * xml: the S3 response documents the client reads, parsed with expat.
 *
 * Every parser is total: any byte string gives either a filled result or -1,
 * never a crash or an unbounded allocation (element values are capped at
 * S3_XML_MAX_VALUE bytes, nesting at 16 levels, DOCTYPEs refused so no entity
 * expansion happens). tests/fuzz/fuzz_s3_xml.c feeds them arbitrary input.
 */
#ifndef SKY_S3_XML_H
#define SKY_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#define S3_XML_MAX_VALUE 4096

/* <Error><Code/><Message/><RequestId/></Error> */
typedef struct s3_error_doc {
    char code[64];
    char message[512];
    char request_id[128];
} s3_error_doc;

/* Fills doc from an <Error> document. Returns 0, or -1 when xml is not one
 * (doc is then all empty strings). */
int s3_xml_parse_error(const char *xml, size_t len, s3_error_doc *doc);

typedef struct s3_list_entry {
    char *key;
    uint64_t size;
    char etag[80];          /* without quotes */
    long long mtime;        /* seconds since the epoch, 0 when absent */
} s3_list_entry;

/* One page of ListObjectsV2. */
typedef struct s3_list_page {
    s3_list_entry *entries;
    size_t nentries, entries_cap;
    char **prefixes;        /* CommonPrefixes (with a delimiter) */
    size_t nprefixes, prefixes_cap;
    int truncated;
    char *next_token;       /* NextContinuationToken, or NULL */
} s3_list_page;

/* Parses a <ListBucketResult> into page (zeroed by the caller, or reused after
 * s3_list_page_free). Returns 0 or -1 with a reason in err. */
int s3_xml_parse_list(const char *xml, size_t len, s3_list_page *page, char *err, size_t errlen);
void s3_list_page_free(s3_list_page *page);

/* <InitiateMultipartUploadResult><UploadId>. Returns 0 or -1. */
int s3_xml_parse_upload_id(const char *xml, size_t len, char *upload_id, size_t cap);

/* The <ETag> under the root element `root` (CompleteMultipartUploadResult,
 * CopyObjectResult), without quotes. Returns 0, 1 when the document is an
 * <Error> instead (S3 sends those with status 200 for these two calls; doc
 * is filled), or -1 when it is neither. */
int s3_xml_parse_etag_result(const char *xml, size_t len, const char *root,
                             char *etag, size_t cap, s3_error_doc *doc);

/* <DeleteResult>: how many <Deleted>, how many <Error>, and the first error. */
typedef struct s3_delete_result {
    size_t deleted;
    size_t errors;
    char first_key[1024];
    char first_code[64];
    char first_message[256];
} s3_delete_result;

int s3_xml_parse_delete_result(const char *xml, size_t len, s3_delete_result *out);

/* "2009-10-12T17:50:30.000Z" → seconds since the epoch; 0 when malformed. */
long long s3_parse_iso8601(const char *s);

#endif
