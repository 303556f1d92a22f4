/*
 * fuzz_aws_ini: libFuzzer target for src/s3/aws_ini.c, the parser of
 * ~/.aws/credentials and ~/.aws/config (text any tool may have written).
 * Any byte string must parse into entries, never crash, hang or leak; every
 * entry parsed must be found again by its section, block and key, and the
 * lookups credentials.c makes are run on the result.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "s3/aws_ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aws_ini f;
    aws_ini_parse(&f, (const char *)data, size);
    for (size_t i = 0; i < f.n; i++) {
        const aws_ini_entry *e = &f.entries[i];
        if (!e->section || !e->sub || !e->key || !e->value)
            __builtin_trap();
        if (!aws_ini_has_section(&f, e->section))
            __builtin_trap();
        /* The first entry with this section, block and key (any case) wins;
         * an empty value reads as absent. */
        const char *v = aws_ini_get(&f, e->section, e->sub, e->key);
        if (v && !*v)
            __builtin_trap();
    }
    (void)aws_ini_get(&f, "default", "", "aws_access_key_id");
    (void)aws_ini_get(&f, "profile lab", "s3", "addressing_style");
    (void)aws_ini_has_section(&f, "profile lab");
    aws_ini_free(&f);
    return 0;
}
