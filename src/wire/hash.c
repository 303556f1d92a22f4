/*
 * hash: the 128-bit identity of a function prototype (FNV-1a, 128-bit
 * variant, over the bytecode). It only has to tell prototypes apart between
 * a host and its own workers over an authenticated channel, so a fast
 * non-cryptographic hash is enough.
 */
#include "wire/wire.h"

#include "util/encode.h"

typedef unsigned __int128 u128;

void wire_hash_bytes(const void *data, size_t len, wire_hash *out)
{
    const u128 prime = ((u128)0x0000000001000000ull << 64) | 0x000000000000013Bull;
    u128 h = ((u128)0x6c62272e07bb0142ull << 64) | 0x62b821756295c58dull;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= prime;
    }
    for (int i = 0; i < 16; i++)
        out->b[i] = (uint8_t)(h >> (8 * i));
}

void wire_hash_hex(const wire_hash *h, char out[33])
{
    sky_hex(h->b, sizeof h->b, out);
}
