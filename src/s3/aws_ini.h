/*
 * aws_ini: the parser of the AWS shared files (~/.aws/credentials and
 * ~/.aws/config), which may hold anything a user or a tool wrote there, so
 * it is total (any bytes parse to some entries, never a crash) and fuzzed
 * (tests/fuzz/fuzz_aws_ini.c).
 *
 * Lines are "[section]", "key = value", comments ("#", ";") and, after a
 * "name =" line with no value, indented "key = value" lines that belong to
 * the nested block `name` (as "s3 =" in ~/.aws/config). Values are kept as
 * written, trimmed; they may be secrets, so every copy is wiped when freed.
 */
#ifndef SKY_S3_AWS_INI_H
#define SKY_S3_AWS_INI_H

#include <stddef.h>

typedef struct aws_ini_entry {
    char *section, *sub, *key, *value;   /* sub: "s3" for a nested "s3 =" block, else "" */
} aws_ini_entry;

typedef struct aws_ini {
    char *path;          /* the file read (NULL after aws_ini_parse) */
    int exists;          /* the file could be opened */
    aws_ini_entry *entries;
    size_t n, cap;
} aws_ini;

/* Files larger than this are read up to it (shared files are small). */
#define AWS_INI_MAX_BYTES (1u << 20)

/* Reads path into f (zeroed first). A missing file gives no entries and
 * exists = 0; it is not an error. */
void aws_ini_load(aws_ini *f, const char *path);
/* Parses text[0..len) into f (zeroed first); text is not modified. */
void aws_ini_parse(aws_ini *f, const char *text, size_t len);
void aws_ini_free(aws_ini *f);   /* wipes the values; f is zeroed */

/* The value of key (case-insensitive) in section and nested block sub ("" for
 * none), or NULL when absent or empty. */
const char *aws_ini_get(const aws_ini *f, const char *section, const char *sub, const char *key);
int aws_ini_has_section(const aws_ini *f, const char *section);

#endif
