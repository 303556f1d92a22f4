/* xml: expat parsers for S3 response documents (see xml.h). */
#include "s3/xml.h"

#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/buf.h"

#define MAX_DEPTH 16
#define MAX_PATH 512

/* A document walk: keeps the element path ("Root/Child/Leaf") and the text of
 * the current element, and hands each finished element to the document's
 * handler. Documents only need leaf values, so that is all it collects. */
typedef struct xml_walk {
    XML_Parser parser;
    char path[MAX_PATH];
    size_t path_len[MAX_DEPTH + 1];
    int depth;
    sky_buf text;
    int failed;
    void (*on_start)(struct xml_walk *w, const char *path);
    void (*on_end)(struct xml_walk *w, const char *path, const char *text, size_t len);
    void *ud;
} xml_walk;

static void walk_fail(xml_walk *w)
{
    w->failed = 1;
    XML_StopParser(w->parser, XML_FALSE);
}

static void XMLCALL walk_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    xml_walk *w = ud;
    size_t cur = w->depth ? w->path_len[w->depth] : 0;
    size_t n = strlen(name);
    if (w->depth >= MAX_DEPTH || cur + n + 2 > sizeof w->path) {
        walk_fail(w);
        return;
    }
    if (w->depth)
        w->path[cur++] = '/';
    memcpy(w->path + cur, name, n + 1);
    w->depth++;
    w->path_len[w->depth] = cur + n;
    sky_buf_reset(&w->text);
    if (w->on_start)
        w->on_start(w, w->path);
}

static void XMLCALL walk_end(void *ud, const XML_Char *name)
{
    xml_walk *w = ud;
    if (w->depth == 0)
        return;
    if (w->on_end)
        w->on_end(w, w->path, w->text.data ? (const char *)w->text.data : "", w->text.len);
    sky_buf_reset(&w->text);
    w->depth--;
    w->path[w->depth ? w->path_len[w->depth] : 0] = '\0';
}

static void XMLCALL walk_text(void *ud, const XML_Char *s, int len)
{
    xml_walk *w = ud;
    if (w->text.len + (size_t)len > S3_XML_MAX_VALUE) {
        walk_fail(w);
        return;
    }
    sky_buf_append(&w->text, s, (size_t)len);
}

/* S3 never sends a DOCTYPE; refusing one rules out entity expansion. */
static void XMLCALL walk_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                                 const XML_Char *pubid, int has_internal_subset)
{
    walk_fail(ud);
}

static int walk_run(xml_walk *w, const char *xml, size_t len)
{
    int rc = -1;
    if (len > (size_t)1 << 30)
        return -1;
    w->parser = XML_ParserCreate(NULL);
    if (!w->parser)
        sky_oom("XML parser");
    sky_buf_init(&w->text);
    XML_SetUserData(w->parser, w);
    XML_SetElementHandler(w->parser, walk_start, walk_end);
    XML_SetCharacterDataHandler(w->parser, walk_text);
    XML_SetStartDoctypeDeclHandler(w->parser, walk_doctype);
    if (XML_Parse(w->parser, xml ? xml : "", (int)len, XML_TRUE) == XML_STATUS_OK && !w->failed)
        rc = 0;
    XML_ParserFree(w->parser);
    sky_buf_free(&w->text);
    return rc;
}

/* Copies a value into a fixed field, truncating; returns 1 when it fit. */
static int copy_value(char *dst, size_t cap, const char *text, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, text, n);
    dst[n] = '\0';
    return n == len;
}

/* ETags arrive quoted ("\"abc\""); the client compares them bare. */
static void copy_etag(char *dst, size_t cap, const char *text, size_t len)
{
    while (len && (*text == '"' || *text == ' ')) {
        text++;
        len--;
    }
    while (len && (text[len - 1] == '"' || text[len - 1] == ' '))
        len--;
    copy_value(dst, cap, text, len);
}

/* ---- <Error> ---- */

typedef struct error_state {
    s3_error_doc *doc;
    int is_error;
} error_state;

static void error_start(xml_walk *w, const char *path)
{
    error_state *st = w->ud;
    if (strcmp(path, "Error") == 0)
        st->is_error = 1;
}

static void error_field(s3_error_doc *doc, const char *path, const char *text, size_t len)
{
    if (strcmp(path, "Error/Code") == 0)
        copy_value(doc->code, sizeof doc->code, text, len);
    else if (strcmp(path, "Error/Message") == 0)
        copy_value(doc->message, sizeof doc->message, text, len);
    else if (strcmp(path, "Error/RequestId") == 0)
        copy_value(doc->request_id, sizeof doc->request_id, text, len);
}

static void error_end(xml_walk *w, const char *path, const char *text, size_t len)
{
    error_state *st = w->ud;
    error_field(st->doc, path, text, len);
}

int s3_xml_parse_error(const char *xml, size_t len, s3_error_doc *doc)
{
    memset(doc, 0, sizeof *doc);
    error_state st = { doc, 0 };
    xml_walk w = { .on_start = error_start, .on_end = error_end, .ud = &st };
    if (walk_run(&w, xml, len) != 0 || !st.is_error || !doc->code[0]) {
        memset(doc, 0, sizeof *doc);
        return -1;
    }
    return 0;
}

/* ---- <ListBucketResult> ---- */

typedef struct list_state {
    s3_list_page *page;
    int root_ok;
    int in_contents;
} list_state;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = sky_xrealloc(p, ncap * elem);
    *cap = ncap;
    return np;
}

static void list_start(xml_walk *w, const char *path)
{
    list_state *st = w->ud;
    s3_list_page *pg = st->page;
    if (strcmp(path, "ListBucketResult") == 0) {
        st->root_ok = 1;
    } else if (strcmp(path, "ListBucketResult/Contents") == 0) {
        pg->entries = grow(pg->entries, &pg->entries_cap, pg->nentries + 1, sizeof *pg->entries);
        memset(&pg->entries[pg->nentries], 0, sizeof pg->entries[0]);
        pg->nentries++;
        st->in_contents = 1;
    }
}

static void list_end(xml_walk *w, const char *path, const char *text, size_t len)
{
    list_state *st = w->ud;
    s3_list_page *pg = st->page;
    s3_list_entry *e = st->in_contents ? &pg->entries[pg->nentries - 1] : NULL;
    if (e && strcmp(path, "ListBucketResult/Contents/Key") == 0) {
        free(e->key);
        e->key = sky_xstrndup(text, len);
    } else if (e && strcmp(path, "ListBucketResult/Contents/Size") == 0) {
        char num[32];
        copy_value(num, sizeof num, text, len);
        e->size = strtoull(num, NULL, 10);
    } else if (e && strcmp(path, "ListBucketResult/Contents/ETag") == 0) {
        copy_etag(e->etag, sizeof e->etag, text, len);
    } else if (e && strcmp(path, "ListBucketResult/Contents/LastModified") == 0) {
        char when[64];
        copy_value(when, sizeof when, text, len);
        e->mtime = s3_parse_iso8601(when);
    } else if (strcmp(path, "ListBucketResult/Contents") == 0) {
        st->in_contents = 0;
        if (!e || !e->key)
            walk_fail(w);   /* an entry without a key is a broken document */
    } else if (strcmp(path, "ListBucketResult/CommonPrefixes/Prefix") == 0) {
        pg->prefixes = grow(pg->prefixes, &pg->prefixes_cap, pg->nprefixes + 1, sizeof *pg->prefixes);
        pg->prefixes[pg->nprefixes++] = sky_xstrndup(text, len);
    } else if (strcmp(path, "ListBucketResult/IsTruncated") == 0) {
        pg->truncated = len == 4 && memcmp(text, "true", 4) == 0;
    } else if (strcmp(path, "ListBucketResult/NextContinuationToken") == 0) {
        free(pg->next_token);
        pg->next_token = sky_xstrndup(text, len);
    }
}

void s3_list_page_free(s3_list_page *page)
{
    for (size_t i = 0; i < page->nentries; i++)
        free(page->entries[i].key);
    for (size_t i = 0; i < page->nprefixes; i++)
        free(page->prefixes[i]);
    free(page->entries);
    free(page->prefixes);
    free(page->next_token);
    memset(page, 0, sizeof *page);
}

int s3_xml_parse_list(const char *xml, size_t len, s3_list_page *page, char *err, size_t errlen)
{
    list_state st = { page, 0, 0 };
    xml_walk w = { .on_start = list_start, .on_end = list_end, .ud = &st };
    if (walk_run(&w, xml, len) != 0) {
        snprintf(err, errlen, "malformed ListObjectsV2 response");
        s3_list_page_free(page);
        return -1;
    }
    if (!st.root_ok) {
        snprintf(err, errlen, "response is not a ListBucketResult");
        s3_list_page_free(page);
        return -1;
    }
    if (page->truncated && (!page->next_token || !*page->next_token)) {
        snprintf(err, errlen, "truncated listing without a continuation token");
        s3_list_page_free(page);
        return -1;
    }
    return 0;
}

/* ---- single values: UploadId, ETag ---- */

typedef struct value_state {
    const char *root;       /* expected root element */
    const char *want;       /* path of the wanted leaf */
    char *out;
    size_t cap;
    int root_ok, found;
    error_state error;
} value_state;

static void value_start(xml_walk *w, const char *path)
{
    value_state *st = w->ud;
    if (strcmp(path, st->root) == 0)
        st->root_ok = 1;
    if (strcmp(path, "Error") == 0)
        st->error.is_error = 1;
}

static void value_end(xml_walk *w, const char *path, const char *text, size_t len)
{
    value_state *st = w->ud;
    if (strcmp(path, st->want) == 0) {
        if (strstr(st->want, "ETag"))
            copy_etag(st->out, st->cap, text, len);
        else if (!copy_value(st->out, st->cap, text, len))
            walk_fail(w);
        st->found = 1;
    } else if (st->error.doc && st->error.is_error) {
        error_field(st->error.doc, path, text, len);
    }
}

int s3_xml_parse_upload_id(const char *xml, size_t len, char *upload_id, size_t cap)
{
    value_state st = { "InitiateMultipartUploadResult", "InitiateMultipartUploadResult/UploadId",
                       upload_id, cap, 0, 0, { NULL, 0 } };
    xml_walk w = { .on_start = value_start, .on_end = value_end, .ud = &st };
    upload_id[0] = '\0';
    if (walk_run(&w, xml, len) != 0 || !st.root_ok || !st.found || !upload_id[0])
        return -1;
    return 0;
}

int s3_xml_parse_etag_result(const char *xml, size_t len, const char *root,
                             char *etag, size_t cap, s3_error_doc *doc)
{
    char want[128];
    snprintf(want, sizeof want, "%s/ETag", root);
    memset(doc, 0, sizeof *doc);
    value_state st = { root, want, etag, cap, 0, 0, { doc, 0 } };
    xml_walk w = { .on_start = value_start, .on_end = value_end, .ud = &st };
    etag[0] = '\0';
    if (walk_run(&w, xml, len) != 0)
        return -1;
    if (st.error.is_error && doc->code[0])
        return 1;
    if (!st.root_ok)
        return -1;
    return 0;
}

/* ---- <DeleteResult> ---- */

typedef struct delete_state {
    s3_delete_result *out;
    int root_ok;
    char key[1024], code[64], message[256];
} delete_state;

static void delete_start(xml_walk *w, const char *path)
{
    delete_state *st = w->ud;
    if (strcmp(path, "DeleteResult") == 0)
        st->root_ok = 1;
    else if (strcmp(path, "DeleteResult/Error") == 0)
        st->key[0] = st->code[0] = st->message[0] = '\0';
}

static void delete_end(xml_walk *w, const char *path, const char *text, size_t len)
{
    delete_state *st = w->ud;
    s3_delete_result *out = st->out;
    if (strcmp(path, "DeleteResult/Deleted") == 0) {
        out->deleted++;
    } else if (strcmp(path, "DeleteResult/Error/Key") == 0) {
        copy_value(st->key, sizeof st->key, text, len);
    } else if (strcmp(path, "DeleteResult/Error/Code") == 0) {
        copy_value(st->code, sizeof st->code, text, len);
    } else if (strcmp(path, "DeleteResult/Error/Message") == 0) {
        copy_value(st->message, sizeof st->message, text, len);
    } else if (strcmp(path, "DeleteResult/Error") == 0) {
        if (out->errors++ == 0) {
            memcpy(out->first_key, st->key, sizeof out->first_key);
            memcpy(out->first_code, st->code, sizeof out->first_code);
            memcpy(out->first_message, st->message, sizeof out->first_message);
        }
    }
}

int s3_xml_parse_delete_result(const char *xml, size_t len, s3_delete_result *out)
{
    memset(out, 0, sizeof *out);
    delete_state st = { .out = out };
    xml_walk w = { .on_start = delete_start, .on_end = delete_end, .ud = &st };
    if (walk_run(&w, xml, len) != 0 || !st.root_ok)
        return -1;
    return 0;
}

long long s3_parse_iso8601(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return 0;
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (long long)timegm(&tm);
}
