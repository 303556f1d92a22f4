/*
 * fuzz_s3_xml: libFuzzer target for src/s3/xml.c. Every S3 response parser
 * must turn any byte string into a result or -1 — never a crash, a hang, an
 * unbounded allocation or a leak — since the bytes come from the network.
 * Build: add_executable(fuzz_s3_xml fuzz_s3_xml.c src/s3/xml.c + sky_util_core
 * objects), link expat, -fsanitize=fuzzer.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "s3/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *xml = (const char *)data;
    s3_error_doc doc;
    s3_list_page page;
    s3_delete_result del;
    char err[128], id[256], etag[80];

    s3_xml_parse_error(xml, size, &doc);
    memset(&page, 0, sizeof page);
    if (s3_xml_parse_list(xml, size, &page, err, sizeof err) == 0) {
        for (size_t i = 0; i < page.nentries; i++)
            if (!page.entries[i].key)
                __builtin_trap();   /* a parsed entry always has its key */
        if (page.truncated && !page.next_token)
            __builtin_trap();
        s3_list_page_free(&page);
    }
    s3_xml_parse_upload_id(xml, size, id, sizeof id);
    s3_xml_parse_etag_result(xml, size, "CompleteMultipartUploadResult", etag, sizeof etag, &doc);
    s3_xml_parse_delete_result(xml, size, &del);
    return 0;
}
