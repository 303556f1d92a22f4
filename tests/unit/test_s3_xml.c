/* test_s3_xml: the S3 response documents the client parses with expat —
 * error documents, listing pages, multipart and copy results, delete
 * results — including hostile and truncated input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "s3/xml.h"

#define DOC(s) (s), strlen(s)

static void error_document_gives_code_message_and_request_id(void **state)
{
    s3_error_doc d;
    const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
                      "<Key>iris/x.csv</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>";
    assert_int_equal(s3_xml_parse_error(DOC(xml), &d), 0);
    assert_string_equal(d.code, "NoSuchKey");
    assert_string_equal(d.message, "The specified key does not exist.");
    assert_string_equal(d.request_id, "4442587FB7D0A2F9");
}

static void error_message_entities_are_decoded(void **state)
{
    s3_error_doc d;
    const char *xml = "<Error><Code>InvalidArgument</Code><Message>a &lt; b &amp; c</Message></Error>";
    assert_int_equal(s3_xml_parse_error(DOC(xml), &d), 0);
    assert_string_equal(d.message, "a < b & c");
}

static void non_error_documents_and_garbage_are_not_errors(void **state)
{
    s3_error_doc d;
    assert_int_equal(s3_xml_parse_error(DOC("<ListBucketResult/>"), &d), -1);
    assert_int_equal(s3_xml_parse_error(DOC("<html>502 Bad Gateway</html>"), &d), -1);
    assert_int_equal(s3_xml_parse_error(DOC("<Error><Code>Trunc"), &d), -1);
    assert_int_equal(s3_xml_parse_error(DOC(""), &d), -1);
    assert_int_equal(s3_xml_parse_error(NULL, 0, &d), -1);
    assert_string_equal(d.code, "");
}

static void a_doctype_is_refused_so_no_entity_expands(void **state)
{
    s3_error_doc d;
    const char *xml = "<!DOCTYPE Error [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>"
                      "<Error><Code>&b;</Code></Error>";
    assert_int_equal(s3_xml_parse_error(DOC(xml), &d), -1);
}

static void overlong_values_and_deep_nesting_are_refused(void **state)
{
    s3_error_doc d;
    size_t n = S3_XML_MAX_VALUE + 100;
    char *xml = malloc(n + 64);
    strcpy(xml, "<Error><Code>");
    memset(xml + 13, 'A', n);
    strcpy(xml + 13 + n, "</Code></Error>");
    assert_int_equal(s3_xml_parse_error(xml, strlen(xml), &d), -1);
    free(xml);

    char deep[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "<a>");
    assert_int_equal(s3_xml_parse_error(DOC(deep), &d), -1);
}

static void list_page_gives_keys_sizes_etags_times_and_token(void **state)
{
    const char *xml =
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><Prefix>logs/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>tok+/=</NextContinuationToken>"
        "<Contents><Key>logs/a &amp; b.txt</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
        "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size></Contents>"
        "<Contents><Key>logs/c.txt</Key><Size>0</Size><ETag>\"x-2\"</ETag></Contents>"
        "<CommonPrefixes><Prefix>logs/sub/</Prefix></CommonPrefixes>"
        "</ListBucketResult>";
    s3_list_page p = { 0 };
    char err[128];
    assert_int_equal(s3_xml_parse_list(DOC(xml), &p, err, sizeof err), 0);
    assert_int_equal(p.nentries, 2);
    assert_string_equal(p.entries[0].key, "logs/a & b.txt");
    assert_int_equal(p.entries[0].size, 434234);
    assert_string_equal(p.entries[0].etag, "fba9dede5f27731c9771645a39863328");
    assert_int_equal(p.entries[0].mtime, 1255369830);
    assert_string_equal(p.entries[1].key, "logs/c.txt");
    assert_string_equal(p.entries[1].etag, "x-2");
    assert_int_equal(p.nprefixes, 1);
    assert_string_equal(p.prefixes[0], "logs/sub/");
    assert_true(p.truncated);
    assert_string_equal(p.next_token, "tok+/=");
    s3_list_page_free(&p);
}

static void last_list_page_is_not_truncated(void **state)
{
    s3_list_page p = { 0 };
    char err[128];
    assert_int_equal(s3_xml_parse_list(DOC("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"),
                                       &p, err, sizeof err), 0);
    assert_false(p.truncated);
    assert_int_equal(p.nentries, 0);
    s3_list_page_free(&p);
}

static void a_truncated_page_without_token_is_an_error(void **state)
{
    s3_list_page p = { 0 };
    char err[128];
    assert_int_equal(s3_xml_parse_list(DOC("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"),
                                       &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "continuation token"));
}

static void list_entries_without_keys_or_wrong_roots_are_errors(void **state)
{
    s3_list_page p = { 0 };
    char err[128];
    assert_int_equal(s3_xml_parse_list(DOC("<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>"),
                                       &p, err, sizeof err), -1);
    assert_int_equal(s3_xml_parse_list(DOC("<Error><Code>NoSuchBucket</Code></Error>"), &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "ListBucketResult"));
    assert_null(p.entries);
}

static void upload_id_is_read_from_initiate_result(void **state)
{
    char id[128];
    assert_int_equal(s3_xml_parse_upload_id(DOC("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                                                "<UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>"),
                                            id, sizeof id), 0);
    assert_string_equal(id, "VXBsb2FkIElE");
    assert_int_equal(s3_xml_parse_upload_id(DOC("<InitiateMultipartUploadResult/>"), id, sizeof id), -1);
    char tiny[4];
    assert_int_equal(s3_xml_parse_upload_id(DOC("<InitiateMultipartUploadResult><UploadId>toolong</UploadId>"
                                                "</InitiateMultipartUploadResult>"), tiny, sizeof tiny), -1);
}

static void complete_result_gives_etag_or_the_error_sent_with_status_200(void **state)
{
    char etag[80];
    s3_error_doc d;
    assert_int_equal(s3_xml_parse_etag_result(DOC("<CompleteMultipartUploadResult><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>"
                                                  "</CompleteMultipartUploadResult>"),
                                              "CompleteMultipartUploadResult", etag, sizeof etag, &d), 0);
    assert_string_equal(etag, "3858f62230ac3c915f300c664312c11f-9");
    assert_int_equal(s3_xml_parse_etag_result(DOC("<Error><Code>InternalError</Code><Message>retry</Message></Error>"),
                                              "CompleteMultipartUploadResult", etag, sizeof etag, &d), 1);
    assert_string_equal(d.code, "InternalError");
    assert_int_equal(s3_xml_parse_etag_result(DOC("<CopyObjectResult><ETag>\"abc\"</ETag></CopyObjectResult>"),
                                              "CopyObjectResult", etag, sizeof etag, &d), 0);
    assert_string_equal(etag, "abc");
    assert_int_equal(s3_xml_parse_etag_result(DOC("<Other/>"), "CopyObjectResult", etag, sizeof etag, &d), -1);
}

static void delete_result_counts_deleted_and_reports_the_first_error(void **state)
{
    s3_delete_result r;
    const char *xml = "<DeleteResult><Deleted><Key>a</Key></Deleted><Deleted><Key>b</Key></Deleted>"
                      "<Error><Key>c</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                      "<Error><Key>d</Key><Code>InternalError</Code><Message>x</Message></Error></DeleteResult>";
    assert_int_equal(s3_xml_parse_delete_result(DOC(xml), &r), 0);
    assert_int_equal(r.deleted, 2);
    assert_int_equal(r.errors, 2);
    assert_string_equal(r.first_key, "c");
    assert_string_equal(r.first_code, "AccessDenied");
    assert_string_equal(r.first_message, "Access Denied");
    assert_int_equal(s3_xml_parse_delete_result(DOC("<DeleteResult/>"), &r), 0);
    assert_int_equal(r.deleted + r.errors, 0);
    assert_int_equal(s3_xml_parse_delete_result(DOC("<Nope/>"), &r), -1);
}

static void iso8601_times_parse_and_malformed_ones_give_zero(void **state)
{
    assert_int_equal(s3_parse_iso8601("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(s3_parse_iso8601("2009-10-12T17:50:30.000Z"), 1255369830);
    assert_int_equal(s3_parse_iso8601("yesterday"), 0);
    assert_int_equal(s3_parse_iso8601("2009-13-12T17:50:30Z"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error_document_gives_code_message_and_request_id),
        cmocka_unit_test(error_message_entities_are_decoded),
        cmocka_unit_test(non_error_documents_and_garbage_are_not_errors),
        cmocka_unit_test(a_doctype_is_refused_so_no_entity_expands),
        cmocka_unit_test(overlong_values_and_deep_nesting_are_refused),
        cmocka_unit_test(list_page_gives_keys_sizes_etags_times_and_token),
        cmocka_unit_test(last_list_page_is_not_truncated),
        cmocka_unit_test(a_truncated_page_without_token_is_an_error),
        cmocka_unit_test(list_entries_without_keys_or_wrong_roots_are_errors),
        cmocka_unit_test(upload_id_is_read_from_initiate_result),
        cmocka_unit_test(complete_result_gives_etag_or_the_error_sent_with_status_200),
        cmocka_unit_test(delete_result_counts_deleted_and_reports_the_first_error),
        cmocka_unit_test(iso8601_times_parse_and_malformed_ones_give_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
