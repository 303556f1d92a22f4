/*
 * fuzz_control: libFuzzer target for src/wire/control.c, the records of the
 * channel between the host and a node's keeper (a keeper reads what a host
 * sent; a host reads what a keeper on a remote machine sent). Any byte
 * string must split into records or stop with an error, never crash, hang
 * or leak; every record parsed must survive being written again and parsed
 * back field for field.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static control_record rec, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    sky_buf out = SKY_BUF_INIT;
    for (int guard = 0; guard < 10000 && off < size; guard++) {
        size_t used = 0;
        wire_err err;
        int rc = control_next(data + off, size - off, &rec, &used, &err);
        if (rc != WIRE_OK)
            break;
        if (used == 0 || used > size - off || rec.n == 0)
            __builtin_trap();
        sky_buf_reset(&out);
        for (size_t i = 0; i < rec.n; i++) {
            if (rec.field[i] < (const char *)data + off || rec.field[i] + rec.len[i] > (const char *)data + off + used)
                __builtin_trap();
            int ok;
            (void)control_int(&rec, i, &ok);
            char *s = control_dup(&rec, i);
            if (s && strlen(s) != rec.len[i])
                __builtin_trap();
            free(s);
            control_field(&out, rec.field[i], rec.len[i]);
        }
        control_end(&out);
        size_t used2;
        if (control_next(out.data, out.len, &again, &used2, &err) != WIRE_OK || used2 != out.len ||
            again.n != rec.n)
            __builtin_trap();
        for (size_t i = 0; i < rec.n; i++)
            if (again.len[i] != rec.len[i] || memcmp(again.field[i], rec.field[i], rec.len[i]) != 0)
                __builtin_trap();
        off += used;
    }
    sky_buf_free(&out);
    return 0;
}
