/* control: netstring records of the host <-> keeper channel (see control.h). */
#include "util/alloc.h"
#include "wire/control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void control_field(sky_buf *out, const char *s, size_t len)
{
    sky_buf_printf(out, "%zu:", len);
    sky_buf_append(out, s, len);
    sky_buf_append_byte(out, ',');
}

void control_field_str(sky_buf *out, const char *s) { control_field(out, s, strlen(s)); }

void control_field_int(sky_buf *out, long long v)
{
    char n[32];
    int k = snprintf(n, sizeof n, "%lld", v);
    control_field(out, n, (size_t)k);
}

void control_end(sky_buf *out) { sky_buf_append_byte(out, '\n'); }

int control_next(const uint8_t *p, size_t len, control_record *r, size_t *used, wire_err *err)
{
    size_t i = 0;
    r->n = 0;
    for (;;) {
        if (i >= len)
            return WIRE_AGAIN;
        if (p[i] == '\n') {
            if (r->n == 0) {
                snprintf(err->msg, sizeof err->msg, "empty control record");
                return WIRE_EBAD;
            }
            *used = i + 1;
            return WIRE_OK;
        }
        size_t flen = 0, digits = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            flen = flen * 10 + (size_t)(p[i] - '0');
            if (++digits > 8 || flen > CONTROL_MAX_FIELD) {
                snprintf(err->msg, sizeof err->msg, "control field %zu is longer than %u bytes",
                         r->n + 1, CONTROL_MAX_FIELD);
                return WIRE_EBAD;
            }
            i++;
        }
        if (i >= len)
            return WIRE_AGAIN;
        if (digits == 0 || p[i] != ':') {
            snprintf(err->msg, sizeof err->msg, "control field %zu: expected a length and ':' at byte %zu",
                     r->n + 1, i);
            return WIRE_EBAD;
        }
        i++;
        if (len - i < flen + 1)
            return WIRE_AGAIN;
        if (p[i + flen] != ',') {
            snprintf(err->msg, sizeof err->msg, "control field %zu does not end with ','", r->n + 1);
            return WIRE_EBAD;
        }
        if (r->n == CONTROL_MAX_FIELDS) {
            snprintf(err->msg, sizeof err->msg, "a control record has more than %d fields", CONTROL_MAX_FIELDS);
            return WIRE_EBAD;
        }
        r->field[r->n] = (const char *)p + i;
        r->len[r->n] = flen;
        r->n++;
        i += flen + 1;
    }
}

int control_is(const control_record *r, size_t i, const char *s)
{
    return i < r->n && r->len[i] == strlen(s) && memcmp(r->field[i], s, r->len[i]) == 0;
}

char *control_dup(const control_record *r, size_t i)
{
    if (i >= r->n || memchr(r->field[i], 0, r->len[i]))
        return NULL;
    char *s = sky_xmalloc(r->len[i] + 1);
    memcpy(s, r->field[i], r->len[i]);
    s[r->len[i]] = 0;
    return s;
}

long long control_int(const control_record *r, size_t i, int *ok)
{
    *ok = 0;
    if (i >= r->n || r->len[i] == 0 || r->len[i] > 18)
        return -1;
    long long v = 0;
    size_t k = 0;
    int neg = r->field[i][0] == '-';
    if (neg && r->len[i] == 1)
        return -1;
    for (k = neg; k < r->len[i]; k++) {
        char c = r->field[i][k];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *ok = 1;
    return neg ? -v : v;
}
